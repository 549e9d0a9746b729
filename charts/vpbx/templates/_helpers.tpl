{{/* Names, labels, images and the environment shared by every workload. */}}

{{- define "vpbx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vpbx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component object's name: <fullname>-<suffix>, kept to a DNS label. */}}
{{- define "vpbx.componentName" -}}
{{- printf "%s-%s" (include "vpbx.fullname" .root) .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vpbx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vpbx.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vpbx.labels" -}}
{{ include "vpbx.selectorLabels" . }}
app.kubernetes.io/part-of: vpbx
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of objects that belong to no single component. */}}
{{- define "vpbx.commonLabels" -}}
app.kubernetes.io/name: {{ include "vpbx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: vpbx
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* "registry/repository:tag" of one entry of .Values.images. */}}
{{- define "vpbx.image" -}}
{{- $images := .root.Values.images -}}
{{- $image := index $images .image -}}
{{- $repository := $image.repository -}}
{{- if $images.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $images.registry) $repository -}}
{{- end -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{- define "vpbx.imagePullSecrets" -}}
{{- range .Values.images.pullSecrets }}
- name: {{ . }}
{{- end -}}
{{- end -}}

{{- define "vpbx.configName" -}}
{{- include "vpbx.componentName" (dict "root" . "suffix" "config") -}}
{{- end -}}

{{- define "vpbx.mediaNodeConfigName" -}}
{{- include "vpbx.componentName" (dict "root" . "suffix" "media-node") -}}
{{- end -}}

{{- define "vpbx.signingSecretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "vpbx.componentName" (dict "root" . "suffix" "signing") -}}
{{- end -}}
{{- end -}}

{{/*
The platform trunks (the operator's carriers) the control API reads: "true" when
there are any, from `trunks` (rendered into a Secret of the chart's) or from an
existing Secret (`trunksSecret.name`). Fails on values the API would refuse at start.
*/}}
{{- define "vpbx.platformTrunks" -}}
{{- $trunks := .Values.trunks | default list -}}
{{- if and $trunks .Values.trunksSecret.name -}}
{{- fail "set either trunks or trunksSecret.name, not both: the control API reads one file of Trunk manifests" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $index, $trunk := $trunks -}}
{{- if hasKey $seen $trunk.name -}}
{{- fail (printf "trunks[%d]: the name %q is used twice" $index $trunk.name) -}}
{{- end -}}
{{- $_ := set $seen $trunk.name true -}}
{{- if and $trunk.register (not (and $trunk.username $trunk.password)) -}}
{{- fail (printf "trunks[%d] (%s): register: true needs username and password (or keep the passwords out of the values with trunksSecret.name)" $index $trunk.name) -}}
{{- end -}}
{{- end -}}
{{- if or $trunks .Values.trunksSecret.name -}}true{{- end -}}
{{- end -}}

{{- define "vpbx.trunksSecretName" -}}
{{- if .Values.trunksSecret.name -}}
{{- .Values.trunksSecret.name -}}
{{- else -}}
{{- include "vpbx.componentName" (dict "root" . "suffix" "trunks") -}}
{{- end -}}
{{- end -}}

{{- define "vpbx.trunksSecretKey" -}}
{{- if .Values.trunksSecret.name -}}{{ .Values.trunksSecret.key }}{{- else -}}trunks.yaml{{- end -}}
{{- end -}}

{{- define "vpbx.operatorName" -}}
{{- include "vpbx.componentName" (dict "root" . "suffix" "operator") -}}
{{- end -}}

{{/* Name of the control API's Deployment, Service, ServiceAccount and RBAC objects. */}}
{{- define "vpbx.controlApiName" -}}
{{- include "vpbx.componentName" (dict "root" . "suffix" "control-api") -}}
{{- end -}}

{{/* Where media nodes fetch their compiled config; the node appends /<tenant>/<city>. */}}
{{- define "vpbx.nodeConfigURL" -}}
{{- printf "http://%s.%s.svc:%d/internal/v1/node-config" (include "vpbx.controlApiName" .) .Release.Namespace (int .Values.controlApi.port) -}}
{{- end -}}

{{/*
Fails rendering when a component that keeps its data in PostgreSQL is on and
no Secret with the URL is named. Argument: root, component (the values key).
*/}}
{{- define "vpbx.requireDatabase" -}}
{{- if not .root.Values.postgresql.urlSecret.name -}}
{{- fail (printf "%s.enabled needs PostgreSQL: create a Secret holding the database URL (postgresql+asyncpg://user:password@host:5432/vpbx) under the key %q and set postgresql.urlSecret.name to its name, or set %s.enabled=false" .component .root.Values.postgresql.urlSecret.key .component) -}}
{{- end -}}
{{- end -}}

{{/*
Labels of the media-node pods the operator renders. The operator replaces
app.kubernetes.io/instance and managed-by with its own values, so
vpbx.io/release names the release: the NetworkPolicies select nodes by it.
*/}}
{{- define "vpbx.mediaNodeLabels" -}}
{{ include "vpbx.labels" (dict "root" . "component" "media-node") }}
vpbx.io/release: {{ .Release.Name }}
{{- end -}}

{{- define "vpbx.mediaNodeSelectorLabels" -}}
app.kubernetes.io/component: media-node
vpbx.io/release: {{ .Release.Name }}
{{- end -}}

{{/* Checksum of the shared settings ConfigMap: pods roll when it changes. */}}
{{- define "vpbx.configChecksum" -}}
{{- include (print .Template.BasePath "/configmap.yaml") . | sha256sum -}}
{{- end -}}

{{/*
Environment of every component: the connection URLs held in Secrets. The plain
settings come from the shared ConfigMap through envFrom.
*/}}
{{- define "vpbx.connectionEnv" -}}
{{- with .Values.redis.urlSecret }}
{{- if .name }}
- name: VPBX_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- with .Values.clickhouse.urlSecret }}
{{- if .name }}
- name: VPBX_CLICKHOUSE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "vpbx.postgresqlEnv" -}}
- name: VPBX_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.urlSecret.name }}
      key: {{ .Values.postgresql.urlSecret.key }}
{{- end -}}

{{- define "vpbx.recordingsEnv" -}}
{{- if eq .Values.recordings.backend "s3" }}
{{- with .Values.recordings.s3.credentialsSecret }}
- name: VPBX_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .accessKeyIdKey }}
- name: VPBX_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes every pod needs: a writable /tmp (the root filesystem is read-only). */}}
{{- define "vpbx.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "vpbx.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "vpbx.recordingsVolume" -}}
{{- if eq .Values.recordings.backend "pvc" }}
- name: recordings
  persistentVolumeClaim:
    claimName: {{ .Values.recordings.pvc.existingClaim }}
{{- end }}
{{- end -}}

{{- define "vpbx.recordingsVolumeMount" -}}
{{- if eq .Values.recordings.backend "pvc" }}
- name: recordings
  mountPath: {{ .Values.recordings.pvc.mountPath }}
{{- end }}
{{- end -}}

{{/* VPBX_DRAIN_TIMEOUT: explicit, or what the grace period leaves after the preStop sleep. */}}
{{- define "vpbx.drainTimeout" -}}
{{- $drain := .Values.mediaNode.drain -}}
{{- $budget := sub (int $drain.terminationGracePeriodSeconds) (int $drain.preStopSleepSeconds) -}}
{{- if gt (int $drain.drainTimeoutSeconds) 0 -}}
{{- if ge (int $drain.drainTimeoutSeconds) (int $budget) -}}
{{- fail (printf "mediaNode.drain.drainTimeoutSeconds (%d) must be less than terminationGracePeriodSeconds minus preStopSleepSeconds (%d), or the kubelet kills nodes with calls still up" (int $drain.drainTimeoutSeconds) (int $budget)) -}}
{{- end -}}
{{- int $drain.drainTimeoutSeconds -}}
{{- else -}}
{{- $computed := sub (int $budget) 10 -}}
{{- if lt (int $computed) 1 -}}
{{- fail (printf "mediaNode.drain.terminationGracePeriodSeconds (%d) leaves no time to drain calls after the %d s preStop sleep; give at least preStopSleepSeconds + 11" (int $drain.terminationGracePeriodSeconds) (int $drain.preStopSleepSeconds)) -}}
{{- end -}}
{{- $computed -}}
{{- end -}}
{{- end -}}
