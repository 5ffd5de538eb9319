{{/* The chart's name. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource names: "sluice" for a release named sluice. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ include "sluice.tag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end }}

{{/* What the Deployment, the Services and the PDB select: sluice's pods. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: aggregator
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The port of a listen address (":24224", "0.0.0.0:9880", "[::]:8080"), or
its default when the address is not set; 0 for "off".
Input: list of the address (or nil) and the default port.
*/}}
{{- define "sluice.listenPort" -}}
{{- $addr := index . 0 | default "" | toString }}
{{- if eq $addr "off" }}0
{{- else if eq $addr "" }}{{ index . 1 }}
{{- else }}
{{- $port := regexReplaceAll "^.*:" $addr "" }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "listen address %q: the chart needs a numeric port, to open it on the container" $addr) }}
{{- end }}
{{- $port }}
{{- end }}
{{- end }}

{{/*
sluice's listeners as container ports, from its configuration: a YAML
list of {name, port, protocol}, in a fixed order.
*/}}
{{- define "sluice.ports" -}}
{{- $c := .Values.config | default dict }}
{{- $fwd := $c.forward | default dict }}
{{- $otlp := $c.otlp | default dict }}
{{- $forward := include "sluice.listenPort" (list $fwd.listen 24224) | atoi }}
{{- $ports := list (dict "name" "forward" "port" $forward "protocol" "TCP") }}
{{- if not (eq (toString (get $fwd "udp_heartbeat")) "false") }}
{{- $ports = append $ports (dict "name" "forward-udp" "port" $forward "protocol" "UDP") }}
{{- end }}
{{- $ports = append $ports (dict "name" "http" "port" (include "sluice.listenPort" (list ($c.http | default dict).listen 9880) | atoi) "protocol" "TCP") }}
{{- range $name, $def := dict "otlp-grpc" (list "grpc" 4317) "otlp-http" (list "http" 4318) }}
{{- $p := include "sluice.listenPort" (list (get (get $otlp (index $def 0) | default dict) "listen") (index $def 1)) | atoi }}
{{- if $p }}
{{- $ports = append $ports (dict "name" $name "port" $p "protocol" "TCP") }}
{{- end }}
{{- end }}
{{- $ports = append $ports (dict "name" "api" "port" (include "sluice.listenPort" (list ($c.api | default dict).listen 8080) | atoi) "protocol" "TCP") }}
{{- toYaml $ports }}
{{- end }}

{{/*
Service ports for sluice's listeners, each on the container port's
number; input: dict of the root context and the names to keep (nil for
all).
*/}}
{{- define "sluice.servicePorts" -}}
{{- $out := list }}
{{- range (include "sluice.ports" .ctx | fromYamlArray) }}
{{- if or (not $.only) (has .name $.only) }}
{{- $out = append $out (dict "name" .name "port" .port "targetPort" .name "protocol" .protocol) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The client address of the NATS subchart's Service: the NATS chart names
it by its fullname (fullnameOverride, or the release and chart names) or
service.name, in its namespaceOverride or the release's namespace.
*/}}
{{- define "sluice.natsURL" -}}
{{- $n := .Values.nats }}
{{- $name := "" }}
{{- if $n.fullnameOverride }}
{{- $name = $n.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $chart := default "nats" $n.nameOverride }}
{{- if contains $chart .Release.Name }}
{{- $name = .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name = printf "%s-%s" .Release.Name $chart | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- with $n.service }}{{ with .name }}{{ $name = . }}{{ end }}{{ end }}
{{- $port := 4222 }}
{{- with $n.config }}{{ with .nats }}{{ with .port }}{{ $port = . }}{{ end }}{{ end }}{{ end }}
{{- printf "nats://%s.%s.svc.%s:%v" $name (default .Release.Namespace $n.namespaceOverride) .Values.clusterDomain $port }}
{{- end }}

{{/*
sluice's configuration file: config, with nats.url pointing at the NATS
subchart when it is on.
*/}}
{{- define "sluice.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $nats := get $config "nats" | default dict }}
{{- if .Values.nats.enabled }}
{{- if $nats.url }}
{{- fail "config.nats.url is set and so is nats.enabled: pick one (the NATS subchart, or your cluster's URL with nats.enabled=false)" }}
{{- end }}
{{- $_ := set $nats "url" (include "sluice.natsURL" .) }}
{{- $_ := set $config "nats" $nats }}
{{- else if not $nats.url }}
{{- fail "sluice's replicas share a JetStream cluster: set nats.enabled=true (the NATS subchart) or config.nats.url" }}
{{- end }}
{{- toYaml $config }}
{{- end }}
