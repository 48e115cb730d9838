{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "costslo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "costslo.fullname" -}}
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

{{- define "costslo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "costslo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "costslo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "costslo.labels" -}}
helm.sh/chart: {{ include "costslo.chart" . }}
{{ include "costslo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: costslo
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The operator's own selector: the gate Job and the test Pod carry other component labels. */}}
{{- define "costslo.operatorSelectorLabels" -}}
{{ include "costslo.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "costslo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "costslo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "costslo.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "costslo.peeringName" -}}
{{- default (include "costslo.fullname" .) .Values.standby.peeringName }}
{{- end }}

{{- define "costslo.replicas" -}}
{{- if .Values.standby.enabled }}{{ .Values.standby.replicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/* The watched namespaces without duplicates, in the order given. */}}
{{- define "costslo.watchNamespaces" -}}
{{- toYaml (uniq .Values.watchNamespaces) }}
{{- end }}

{{/* The rules the operator needs on namespaced resources, the same cluster-wide or per namespace: the
verbs its calls use and no more (status and scale are written by patch; kopf's own Events are off, and its
event handlers keep no state on the CostSLO, so the CostSLO itself is only read). */}}
{{- define "costslo.namespacedRules" -}}
- apiGroups: ["costslo.dev"]
  resources: ["costslos"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["costslo.dev"]
  resources: ["costslos/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["argoproj.io"]
  resources: ["rollouts/scale"]
  verbs: ["patch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Cluster-scoped reads: nodes (GPU products and prices) and CRDs (kopf's resource scanning). */}}
{{- define "costslo.clusterRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{- define "costslo.peeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ if .Values.watchNamespaces }}"kopfpeerings"{{ else }}"clusterkopfpeerings"{{ end }}]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/* A peering object's hook annotations when its kind is not served yet (first install with the CRDs):
Helm builds every release object before creating any, so the object waits for post-install; it carries
Helm's ownership metadata, and the next upgrade adopts it into the release. */}}
{{- define "costslo.peeringHook" -}}
{{- $kind := ternary "KopfPeering" "ClusterKopfPeering" (gt (len .Values.watchNamespaces) 0) }}
{{- if not (.Capabilities.APIVersions.Has (printf "kopf.dev/v1/%s" $kind)) }}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-weight: "-5"
helm.sh/hook-delete-policy: before-hook-creation
meta.helm.sh/release-name: {{ .Release.Name }}
meta.helm.sh/release-namespace: {{ .Release.Namespace }}
{{- end }}
{{- end }}
