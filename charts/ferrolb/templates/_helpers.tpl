{{- define "ferrolb.name" -}}ferrolb{{- end }}

{{- define "ferrolb.labels" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "ferrolb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "ferrolb.controllerServiceAccount" -}}
{{ .Values.serviceAccounts.controller | default (printf "%s-controller" .Release.Name) }}
{{- end }}

{{- define "ferrolb.speakerServiceAccount" -}}
{{ .Values.serviceAccounts.speaker | default (printf "%s-speaker" .Release.Name) }}
{{- end }}

{{- /* HTTP or HTTPS: what a probe or a scraper of the metrics port must speak. */}}
{{- define "ferrolb.metricsScheme" -}}
{{ if .Values.metrics.secure }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{- /* frr.logLevel, refused at install unless FRR (or MetalLB's mapping) knows it. */}}
{{- /* The membership key's Secret: empty only when speaker.memberlist.insecure says so. */}}
{{- define "ferrolb.memberlistSecret" -}}
{{- if not .Values.speaker.memberlist.insecure -}}
{{- required "speaker.memberlist.secretName is empty: name the Secret of the speakers' membership key, or set speaker.memberlist.insecure=true to run membership unsealed" .Values.speaker.memberlist.secretName -}}
{{- end -}}
{{- end }}

{{- define "ferrolb.frrLogLevel" -}}
{{- $known := list "all" "debug" "info" "warn" "error" "none" "emergencies" "alerts" "critical" "errors" "warnings" "notifications" "informational" "debugging" }}
{{- if not (has .Values.frr.logLevel $known) }}
{{- fail (printf "frr.logLevel %q is not a log level: use one of %s" (toString .Values.frr.logLevel) (join ", " $known)) }}
{{- end }}
{{- .Values.frr.logLevel }}
{{- end }}
