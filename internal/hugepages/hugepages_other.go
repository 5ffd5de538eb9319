//go:build !linux

package hugepages

// Reserve does nothing here: transparent huge pages are Linux's.
func Reserve(limit int64) (start uintptr, bytes int64, why string, err error) {
	return 0, 0, "transparent huge pages are Linux's", nil
}

// Mode is empty here: no transparent huge pages.
func Mode() string { return "" }
