{{- define "superfluid.labels" -}}
app.kubernetes.io/part-of: superfluid
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "superfluid.operator.name" -}}{{ .Release.Name }}-operator{{- end -}}
{{- define "superfluid.shim.name" -}}{{ .Release.Name }}-cri-shim{{- end -}}

{{- define "superfluid.operator.selector" -}}
app.kubernetes.io/name: superfluid-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "superfluid.shim.selector" -}}
app.kubernetes.io/name: superfluid-cri-shim
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* repository:tag (tag defaults to the appVersion), or repository@digest when a digest pins it. */ -}}
{{- define "superfluid.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .appVersion }}
{{- end -}}
{{- end -}}
