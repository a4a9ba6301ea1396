{{/* Names: <release>-outbound-messaging unless the release name already contains the chart name. */}}
{{- define "outbound.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "outbound.fullname" -}}
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

{{/* <fullname>-<suffix>, kept within 63 characters. */}}
{{- define "outbound.component" -}}
{{- $full := include "outbound.fullname" .root | trunc (int (sub 62 (len .name))) | trimSuffix "-" }}
{{- printf "%s-%s" $full .name }}
{{- end }}

{{- define "outbound.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; call with (dict "root" $ "component" "api"). */}}
{{- define "outbound.labels" -}}
helm.sh/chart: {{ include "outbound.chart" .root }}
{{ include "outbound.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: outbound-messaging
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "outbound.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outbound.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* An image reference: repository@digest when a digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "outbound.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "outbound.senderServiceAccount" -}}
{{- if .Values.senderServiceAccount.create }}
{{- default (include "outbound.component" (dict "root" . "name" "sender")) .Values.senderServiceAccount.name }}
{{- else }}
{{- default "default" .Values.senderServiceAccount.name }}
{{- end }}
{{- end }}

{{- define "outbound.operatorServiceAccount" -}}
{{- if .Values.operatorServiceAccount.create }}
{{- default (include "outbound.component" (dict "root" . "name" "operator")) .Values.operatorServiceAccount.name }}
{{- else }}
{{- default "default" .Values.operatorServiceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespaces the operator serves: the watch list, or the release namespace. Empty when cluster-wide. */}}
{{- define "outbound.operatorNamespaces" -}}
{{- if not .Values.operator.clusterWide }}
{{- if .Values.operator.watchNamespaces }}
{{- join "," .Values.operator.watchNamespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}
{{- end }}

{{/* Namespaces where the operator may run workers (a Role each): the watch list, or the release namespace. */}}
{{- define "outbound.workloadNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- join "," .Values.operator.watchNamespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* DATABASE_URL (and REDIS_URL when configured) from their Secrets: never an inline value. */}}
{{- define "outbound.connectionEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: url
{{- if .Values.redis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: url
{{- end }}
{{- end }}

{{/* Pod-level security: non-root, no privilege escalation, RuntimeDefault seccomp. */}}
{{- define "outbound.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "outbound.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
{{- end }}

{{/* Python writes nothing else than /tmp (read-only root filesystem otherwise). */}}
{{- define "outbound.tmpVolume" -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- end }}

{{- define "outbound.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "outbound.scrapeAnnotations" -}}
{{- if .root.Values.monitoring.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path }}
{{- end }}
{{- end }}

{{/* The address rule for callback URLs: the API applies it at registration, the dispatcher at delivery. */}}
{{- define "outbound.callbackAddressEnv" -}}
- name: OUTBOUND_CALLBACKS_ALLOW_PRIVATE
  value: {{ .Values.callbacks.allowPrivateAddresses | quote }}
{{- end }}
