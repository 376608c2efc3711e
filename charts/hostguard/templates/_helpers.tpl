{{/* Names, labels and the pieces shared by several templates. */}}

{{- define "hostguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; also the Service name the API server calls. */}}
{{- define "hostguard.fullname" -}}
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

{{- define "hostguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hostguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hostguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hostguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hostguard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The `annotations:` of a resource's metadata: commonAnnotations merged with the resource's own
(`extra`, which win), or nothing at all. Call with (dict "root" $ "extra" $map).
*/}}
{{- define "hostguard.annotations" -}}
{{- $all := merge (deepCopy (default dict .extra)) (deepCopy (default dict .root.Values.commonAnnotations)) }}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "hostguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hostguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hostguard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "hostguard.leaseName" -}}
{{- default (printf "%s-leader" (include "hostguard.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key). */}}
{{- define "hostguard.tlsSecretName" -}}
{{- if .Values.certManager.enabled }}
{{- if .Values.tls.existingSecret }}
{{- fail "tls.existingSecret is set but certManager.enabled is true: set certManager.enabled=false to use your own Secret" }}
{{- end }}
{{- printf "%s-tls" (include "hostguard.fullname" .) }}
{{- else }}
{{- required "tls.existingSecret is required when certManager.enabled is false" .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{/*
Annotations and caBundle of the webhook configurations: cert-manager's CA injector fills the bundle
from the serving Certificate; with a user-provided Secret the bundle is given in the values.
*/}}
{{- define "hostguard.webhookAnnotations" -}}
{{- $own := dict }}
{{- if .Values.certManager.enabled }}
{{- $own = dict "cert-manager.io/inject-ca-from" (printf "%s/%s-tls" .Release.Namespace (include "hostguard.fullname" .)) }}
{{- end }}
{{- include "hostguard.annotations" (dict "root" . "extra" $own) }}
{{- end }}

{{- define "hostguard.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "hostguard.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
  {{- if not .root.Values.certManager.enabled }}
  caBundle: {{ required "tls.caBundle (base64 PEM of the CA) is required when certManager.enabled is false" .root.Values.tls.caBundle }}
  {{- end }}
{{- end }}

{{/*
Namespaces hostguard never sees: kube-system, the release namespace (so that hostguard's own pods can
always start, even when no replica is up to answer), the configured ones, and, only when
webhook.namespaceOptOut.enabled is true, any namespace labelled hostguard.dev/ignore=true (off by
default: whoever may label a namespace could then exempt it).
*/}}
{{- define "hostguard.excludedNamespaces" -}}
{{- concat (list "kube-system" .Release.Namespace) .Values.webhook.excludedNamespaces | uniq | toJson }}
{{- end }}

{{- define "hostguard.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range (include "hostguard.excludedNamespaces" . | fromJsonArray) }}
        - {{ . | quote }}
        {{- end }}
    {{- if .Values.webhook.namespaceOptOut.enabled }}
    - key: hostguard.dev/ignore
      operator: NotIn
      values: ["true"]
    {{- end }}
{{- end }}
