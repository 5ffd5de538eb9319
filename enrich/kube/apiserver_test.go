package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// apiServer serves, in JSON over HTTP, the part of the Kubernetes API the
// cache uses: list, watch (with and without the initial events of a
// watch-list) and get of pods and namespaces. Every request is answered by
// calling a clientset, in tests client-go's fake one, so that the cache's
// own REST client, codecs and informers run as against kube-apiserver while
// the test drives objects, reactors and action counts through the fake.
type apiServer struct {
	// noWatchList refuses watch-lists as servers before Kubernetes 1.27
	// (and later ones with the WatchList feature off) do.
	noWatchList bool
	// lists and watchLists count the lists and the watch-lists served.
	lists, watchLists atomic.Int32
}

// startAPIServer serves cs on loopback and returns a core/v1 client of it.
func startAPIServer(t *testing.T, cs kubernetes.Interface, a *apiServer) rest.Interface {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/pods", a.collection(
		func(r *http.Request, o metav1.ListOptions) (runtime.Object, error) {
			l, err := cs.CoreV1().Pods("").List(r.Context(), o)
			if l != nil {
				l.Kind, l.APIVersion = "PodList", "v1"
			}
			return l, err
		},
		func(r *http.Request, o metav1.ListOptions) (watch.Interface, error) {
			return cs.CoreV1().Pods("").Watch(r.Context(), o)
		}, func() metav1.Object { return &corev1.Pod{} }))
	mux.HandleFunc("GET /api/v1/namespaces", a.collection(
		func(r *http.Request, o metav1.ListOptions) (runtime.Object, error) {
			l, err := cs.CoreV1().Namespaces().List(r.Context(), o)
			if l != nil {
				l.Kind, l.APIVersion = "NamespaceList", "v1"
			}
			return l, err
		},
		func(r *http.Request, o metav1.ListOptions) (watch.Interface, error) {
			return cs.CoreV1().Namespaces().Watch(r.Context(), o)
		}, func() metav1.Object { return &corev1.Namespace{} }))
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}", func(w http.ResponseWriter, r *http.Request) {
		p, err := cs.CoreV1().Pods(r.PathValue("ns")).Get(r.Context(), r.PathValue("name"), metav1.GetOptions{})
		if err != nil {
			writeStatus(w, err)
			return
		}
		setKind(p)
		writeJSON(w, http.StatusOK, p)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client, err := newCoreClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// collection serves the list and the watch of one resource; empty makes
// the object a bookmark carries.
func (a *apiServer) collection(list func(*http.Request, metav1.ListOptions) (runtime.Object, error),
	watchFn func(*http.Request, metav1.ListOptions) (watch.Interface, error), empty func() metav1.Object) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The fake clientset looks at none of the other options.
		var opts metav1.ListOptions
		for name, v := range map[string]*bool{"watch": &opts.Watch, "allowWatchBookmarks": &opts.AllowWatchBookmarks} {
			if q := r.URL.Query().Get(name); q != "" {
				b, err := strconv.ParseBool(q)
				if err != nil {
					writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("%s: %v", name, err)))
					return
				}
				*v = b
			}
		}
		if q := r.URL.Query().Get("sendInitialEvents"); q != "" {
			b, err := strconv.ParseBool(q)
			if err != nil {
				writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("sendInitialEvents: %v", err)))
				return
			}
			opts.SendInitialEvents = &b
		}
		if !opts.Watch {
			a.lists.Add(1)
			l, err := list(r, opts)
			if err != nil {
				writeStatus(w, err)
				return
			}
			writeJSON(w, http.StatusOK, l)
			return
		}
		watchList := opts.SendInitialEvents != nil && *opts.SendInitialEvents
		if watchList && a.noWatchList {
			writeStatus(w, apierrors.NewInvalid(schema.GroupKind{Group: "meta.k8s.io", Kind: "ListOptions"}, "",
				field.ErrorList{field.Forbidden(field.NewPath("sendInitialEvents"), "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")}))
			return
		}
		wi, err := watchFn(r, opts)
		if err != nil {
			writeStatus(w, err)
			return
		}
		defer wi.Stop()
		// A watch-list (sendInitialEvents) first gets every listed object
		// as ADDED, then the bookmark that ends the initial events, as
		// kube-apiserver sends them.
		var initial []runtime.Object
		var bookmark metav1.Object
		if watchList {
			a.watchLists.Add(1)
			l, err := list(r, metav1.ListOptions{})
			if err == nil {
				initial, err = meta.ExtractList(l)
			}
			if err != nil {
				writeStatus(w, err)
				return
			}
			bookmark = empty()
			bookmark.SetResourceVersion(l.(metav1.ListInterface).GetResourceVersion())
			bookmark.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		enc := json.NewEncoder(w)
		send := func(typ watch.EventType, obj runtime.Object) bool {
			obj = obj.DeepCopyObject() // the fake's tracker shares its objects
			setKind(obj)
			raw, err := json.Marshal(obj)
			if err != nil || enc.Encode(metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: raw}}) != nil {
				return false
			}
			w.(http.Flusher).Flush()
			return true
		}
		for _, o := range initial {
			if !send(watch.Added, o) {
				return
			}
		}
		if bookmark != nil && !send(watch.Bookmark, bookmark.(runtime.Object)) {
			return
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case ev, ok := <-wi.ResultChan():
				if !ok || !send(ev.Type, ev.Object) {
					return
				}
			}
		}
	}
}

// setKind fills the type fields the fake clientset leaves empty.
func setKind(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		o.Kind, o.APIVersion = "Pod", "v1"
	case *corev1.Namespace:
		o.Kind, o.APIVersion = "Namespace", "v1"
	}
}

// writeStatus answers an error as kube-apiserver does: a Status object
// with the error's code.
func writeStatus(w http.ResponseWriter, err error) {
	st := apierrors.NewInternalError(err).ErrStatus
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st = se.Status()
	}
	st.Kind, st.APIVersion = "Status", "v1"
	writeJSON(w, int(st.Code), &st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
