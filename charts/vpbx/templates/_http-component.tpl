{{/*
Deployment, Service and PodDisruptionBudget of an HTTP component (control API,
CRM): `vpbx <command>` serving HTTP on .values.port with /healthz.
Arguments: root (the top context), component, command, image, values; optional:
serviceAccount (runs under it with its token mounted; else no token at all),
env (extra container env, a YAML list), readinessPath (default /healthz),
startupSeconds (a startup probe on /healthz allowing that long, e.g. for
database migrations, before liveness counts), volumes and volumeMounts (extra
ones, YAML lists), annotations (extra pod annotations, a YAML map).
*/}}
{{- define "vpbx.httpComponent" -}}
{{- $root := .root -}}
{{- $values := .values -}}
{{- $name := include "vpbx.componentName" (dict "root" $root "suffix" .component) -}}
{{- $labels := include "vpbx.labels" (dict "root" $root "component" .component) -}}
{{- $selector := include "vpbx.selectorLabels" (dict "root" $root "component" .component) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  replicas: {{ $values.replicas }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- $labels | nindent 8 }}
      annotations:
        checksum/config: {{ include "vpbx.configChecksum" $root }}
        {{- with .annotations }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- if .serviceAccount }}
      serviceAccountName: {{ .serviceAccount }}
      automountServiceAccountToken: true
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      {{- with (include "vpbx.imagePullSecrets" $root) }}
      imagePullSecrets:
        {{- . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ .component }}
          image: {{ include "vpbx.image" (dict "root" $root "image" .image) }}
          imagePullPolicy: {{ $root.Values.images.pullPolicy }}
          command: ["vpbx", {{ .command | quote }}]
          ports:
            - name: http
              containerPort: {{ $values.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "vpbx.configName" $root }}
          env:
            - name: VPBX_HTTP_HOST
              value: "0.0.0.0"
            - name: VPBX_HTTP_PORT
              value: {{ $values.port | quote }}
            {{- include "vpbx.postgresqlEnv" $root | nindent 12 }}
            {{- include "vpbx.connectionEnv" $root | nindent 12 }}
            {{- include "vpbx.recordingsEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
          {{- with .startupSeconds }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: {{ div (int .) 5 | max 1 }}
          {{- end }}
          readinessProbe:
            httpGet:
              path: {{ .readinessPath | default "/healthz" }}
              port: http
            initialDelaySeconds: 3
            periodSeconds: 10
            timeoutSeconds: 3
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            initialDelaySeconds: 15
            periodSeconds: 20
            timeoutSeconds: 3
            failureThreshold: 3
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "vpbx.tmpVolumeMount" $root | nindent 12 }}
            {{- include "vpbx.recordingsVolumeMount" $root | nindent 12 }}
            {{- with .volumeMounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "vpbx.tmpVolume" $root | nindent 8 }}
        {{- include "vpbx.recordingsVolume" $root | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- $selector | nindent 4 }}
  ports:
    - name: http
      port: {{ $values.port }}
      targetPort: http
      protocol: TCP
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  maxUnavailable: {{ $values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
{{- end -}}
