{{/* Names ---------------------------------------------------------------------------- */}}
{{- define "perpex.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "perpex.fullname" -}}
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

{{- define "perpex.component" -}}
{{- printf "%s-%s" (include "perpex.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels --------------------------------------------------------------------------- */}}
{{- define "perpex.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "perpex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: perpex
{{- end -}}

{{- define "perpex.selectorLabels" -}}
app.kubernetes.io/name: {{ include "perpex.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "perpex.componentLabels" -}}
{{ include "perpex.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image ---------------------------------------------------------------------------- */}}
{{- define "perpex.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Security: every Perp-EX container runs as the image's non-root user, read-only. */}}
{{- define "perpex.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "perpex.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "perpex.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  initialDelaySeconds: 5
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{/* Config and secrets shared by the indexer and the dashboard. */}}
{{- define "perpex.configMapName" -}}
{{- printf "%s-config" (include "perpex.fullname" .) -}}
{{- end -}}

{{- define "perpex.deploymentConfigMapName" -}}
{{- if .Values.config.deployment.existingConfigMap -}}
{{- .Values.config.deployment.existingConfigMap -}}
{{- else if .Values.config.deployment.json -}}
{{- printf "%s-deployment" (include "perpex.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "perpex.commonEnv" -}}
- name: DB_URI
  valueFrom:
    secretKeyRef:
      name: {{ required "config.database.existingSecret is required (a Secret holding the PostgreSQL DSN)" .Values.config.database.existingSecret }}
      key: {{ .Values.config.database.secretKey }}
{{- if .Values.config.chain.rpcSecret.name }}
- name: RPC_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.config.chain.rpcSecret.name }}
      key: {{ .Values.config.chain.rpcSecret.key }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{- define "perpex.deploymentVolume" -}}
{{- $cm := include "perpex.deploymentConfigMapName" . -}}
{{- if $cm }}
- name: deployment
  configMap:
    name: {{ $cm }}
    items:
      - key: {{ .Values.config.deployment.key }}
        path: {{ .Values.config.deployment.key }}
{{- end }}
{{- end -}}

{{- define "perpex.deploymentMount" -}}
{{- if include "perpex.deploymentConfigMapName" . }}
- name: deployment
  mountPath: /etc/perpex/deployment
  readOnly: true
{{- end }}
{{- end -}}

{{/* Operator RBAC rules: least privilege, rendered into a ClusterRole (all namespaces) or
     one Role per watched namespace. No access to Secrets at all. */}}
{{- define "perpex.operatorRules" -}}
- apiGroups: ["perpex.io"]
  resources: ["perpmarkets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["perpex.io"]
  resources: ["perpmarkets/status"]
  verbs: ["get", "patch"]
# Owner references with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: ["perpex.io"]
  resources: ["perpmarkets/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "create", "patch", "delete"]
{{- if .Values.operator.workloadRole.create }}
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["get", "create", "patch", "delete"]
# Lets the operator bind (only) the market workload ClusterRole without holding its rights.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["bind"]
  resourceNames: [{{ include "perpex.workloadRoleName" . | quote }}]
{{- end }}
# kopf reports handler outcomes as Kubernetes Events on the PerpMarket.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{- define "perpex.workloadRoleName" -}}
{{- printf "%s-market-workload" (include "perpex.fullname" .) -}}
{{- end -}}

{{- define "perpex.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}
