{{/* Names and labels shared by every template. */}}
{{- define "superloop-ops.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "superloop-ops.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects carry the release namespace too, so two releases never collide. */}}
{{- define "superloop-ops.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "superloop-ops.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "superloop-ops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "superloop-ops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "superloop-ops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "superloop-ops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "superloop-ops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "superloop-ops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Namespaces the operator watches when not cluster-wide. */}}
{{- define "superloop-ops.watchNamespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- join "," .Values.watch.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The five kinds of ops.superloop.dev/v1alpha1. */}}
{{- define "superloop-ops.kinds" -}}
- loops
- fleets
- fleetpolicies
- handoffintents
- promotionapplies
{{- end -}}

{{/*
Namespaced rules: exactly the verbs the operator uses in a watched namespace.
*/}}
{{- define "superloop-ops.namespacedRules" -}}
# Watch and reconcile the five kinds; patch carries kopf's finalizers and bookkeeping annotations.
- apiGroups: [ops.superloop.dev]
  resources:
    {{- include "superloop-ops.kinds" . | nindent 4 }}
  verbs: [get, list, watch, patch]
- apiGroups: [ops.superloop.dev]
  resources: [loops/status, fleets/status, fleetpolicies/status, handoffintents/status, promotionapplies/status]
  verbs: [patch]
# The Fleet controller materialises Loops and proposes HandoffIntents (delete: replaced or withdrawn ones).
- apiGroups: [ops.superloop.dev]
  resources: [loops, handoffintents]
  verbs: [create, delete]
# Events on every transition (kopf posts core Events; our code may use events.k8s.io).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
{{- if or .Values.rbac.secretNames .Values.rbac.allSecrets }}
# Secrets referenced by Loops: sprite-service tokens and alert sink secrets (spec.alerts.secretRef).
# No blanket get by default: the names listed, or every Secret only with rbac.allSecrets. The
# operator still uses a Secret only when it is labelled ops.superloop.dev/usable-by=superloop-ops.
- apiGroups: [""]
  resources: [secrets]
  {{- if not .Values.rbac.allSecrets }}
  resourceNames:
    {{- toYaml .Values.rbac.secretNames | nindent 4 }}
  {{- end }}
  verbs: [get]
{{- end }}
# Alert sink catalogs referenced by Loops (spec.alerts.sinksConfigMapRef) and drill evidence
# referenced by FleetPolicies (spec.promotion.drillEvidenceConfigMapRef): read only.
- apiGroups: [""]
  resources: [configmaps]
  {{- with .Values.rbac.configMapNames }}
  resourceNames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  verbs: [get]
{{- end -}}

{{/* loopClaims as <release namespace>/claimA=/path,... (sorted by claim name): the claims are PVCs
of the release namespace, so only Loops of that namespace resolve them. */}}
{{- define "superloop-ops.pvcDirs" -}}
{{- $pairs := list -}}
{{- range $claim, $path := .Values.loopClaims -}}
{{- $pairs = append $pairs (printf "%s/%s=%s" $.Release.Namespace $claim $path) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
Shards (values.shards > 1): one Deployment, state claim and peering per shard, named with
this suffix; the operator gets SUPERLOOP_SHARD=i/n. One shard keeps the unsuffixed names.
Call with (dict "root" $ "index" $i).
*/}}
{{- define "superloop-ops.shardSuffix" -}}
{{- if gt (int .root.Values.shards) 1 -}}-shard-{{ .index }}{{- end -}}
{{- end -}}

{{/*
The annotations that make up an approval of a HandoffIntent. A change of any of them is a new
approval, for the admission policy as for the operator, whose approval fingerprint reads exactly
these (models/handoff_intent.py APPROVAL_ANNOTATIONS; tests/unit/test_approval_definition.py).
*/}}
{{- define "superloop-ops.approvalAnnotations" -}}
- ops.superloop.dev/approved
- ops.superloop.dev/approved-by
- ops.superloop.dev/approved-at
- ops.superloop.dev/note
{{- end -}}

{{/* The admission policy bindings' scope: the watched namespaces (everywhere with allNamespaces). */}}
{{- define "superloop-ops.admissionMatchResources" -}}
{{- if not .Values.watch.allNamespaces -}}
matchResources:
  namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values:
          {{- range splitList "," (include "superloop-ops.watchNamespaces" .) }}
          - {{ . }}
          {{- end }}
{{- end }}
{{- end -}}
