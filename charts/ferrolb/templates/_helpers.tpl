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
