{{/*
Names. Every helper is namespaced with the chart name so a parent chart cannot collide with it.
*/}}

{{- define "bond-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix: 63 characters at most, the DNS label limit. */}}
{{- define "bond-injector.fullname" -}}
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

{{- define "bond-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Component names leave room for the suffix: fullname is cut to 48 so `-cni-installer` fits. */}}
{{- define "bond-injector.webhook.fullname" -}}
{{- printf "%s-webhook" (include "bond-injector.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}

{{- define "bond-injector.cniInstaller.fullname" -}}
{{- printf "%s-cni-installer" (include "bond-injector.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}

{{- define "bond-injector.certgen.fullname" -}}
{{- printf "%s-certgen" (include "bond-injector.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}

{{- define "bond-injector.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "bond-injector.webhook.fullname" .) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The MutatingWebhookConfiguration is cluster-scoped: the release name keeps two releases apart. */}}
{{- define "bond-injector.webhookConfigName" -}}
{{- include "bond-injector.fullname" . }}
{{- end }}

{{/* The name of the one webhook inside the configuration (must be fully qualified). */}}
{{- define "bond-injector.webhookName" -}}
pods.bond-injector.io
{{- end }}

{{- define "bond-injector.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "external" }}
{{- .Values.certificates.external.secretName }}
{{- else }}
{{- printf "%s-tls" (include "bond-injector.webhook.fullname" .) }}
{{- end }}
{{- end }}

{{- define "bond-injector.certificateName" -}}
{{- include "bond-injector.webhook.fullname" . }}
{{- end }}

{{/* True (non-empty) when the webhook runs in the cluster, i.e. no out-of-cluster URL is set. */}}
{{- define "bond-injector.inCluster" -}}
{{- if not .Values.webhook.url }}true{{ end }}
{{- end }}

{{- define "bond-injector.networksNamespace" -}}
{{- default .Release.Namespace .Values.networks.namespace }}
{{- end }}

{{/*
Labels: the recommended app.kubernetes.io set. Call with (dict "ctx" $ "component" "webhook").
*/}}
{{- define "bond-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bond-injector.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "bond-injector.labels" -}}
{{ include "bond-injector.selectorLabels" . }}
helm.sh/chart: {{ include "bond-injector.chart" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: bond-injector
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "bond-injector.image" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .ctx.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The restricted Pod Security Standard, for every container that does not need the host. */}}
{{- define "bond-injector.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "bond-injector.restrictedPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The CNI installer container. Call with (dict "ctx" $ "installOnly" true|false): the helper's init
container installs and exits; without the helper it installs, then sleeps so the pod stays up.
*/}}
{{- define "bond-injector.cniInstaller.installContainer" -}}
name: install
image: {{ include "bond-injector.image" (dict "ctx" .ctx "image" .ctx.Values.cniInstaller.image) }}
imagePullPolicy: {{ .ctx.Values.cniInstaller.image.pullPolicy }}
command: ["/usr/local/bin/install-bond-cni"]
env:
  - name: CNI_BIN_DIR
    value: /host/cni/bin
  {{- if .installOnly }}
  - name: INSTALL_ONLY
    value: "1"
  {{- end }}
resources:
  {{- toYaml .ctx.Values.cniInstaller.resources | nindent 2 }}
# Root only to write the root-owned host directory; no capability is needed for that.
securityContext:
  runAsUser: 0
  runAsNonRoot: false
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
volumeMounts:
  - name: cni-bin
    mountPath: /host/cni/bin
{{- end }}

{{/*
The helper container's command for .args: the node's installed `bond` (the hostPath of hostBinDir
is mounted at the same path, so the runtime and the helper run the same file) with the socket the
client asks unless the runtime exports another (cni/helper/client/bond.c).
*/}}
{{- define "bond-injector.cniInstaller.helperCommand" -}}
{{- $bond := printf "%s/bond" (trimSuffix "/" .ctx.Values.cniInstaller.hostBinDir) }}
{{- concat (list $bond) .args (list "--socket" "/run/bond-cni/helper.sock") | toJson }}
{{- end }}

{{/*
The node part's own namespace (default `<release namespace>-node`): its pods need Pod Security
`privileged` (hostPath, and with the helper host network and capabilities), which the webhook's
namespace then does not have to allow.
*/}}
{{- define "bond-injector.cniInstaller.namespace" -}}
{{- default (printf "%s-node" (.Release.Namespace | trunc 58 | trimSuffix "-")) .Values.cniInstaller.namespace }}
{{- end }}

{{/* The node pods' ServiceAccount as the apiserver names its tokens' user (for policies). */}}
{{- define "bond-injector.cniInstaller.username" -}}
{{- printf "system:serviceaccount:%s:%s" (include "bond-injector.cniInstaller.namespace" .) (include "bond-injector.cniInstaller.fullname" .) }}
{{- end }}

{{/*
What the node helpers run, and nothing else: the DaemonSet's pods roll when this changes, not on
every upgrade (the installer skips a copy when the node already has identical content anyway).
*/}}
{{- define "bond-injector.cniInstaller.checksum" -}}
{{- $i := .Values.cniInstaller }}
{{- dict "image" (include "bond-injector.image" (dict "ctx" . "image" $i.image)) "pullPolicy" $i.image.pullPolicy "hostBinDir" $i.hostBinDir "helper" $i.helper "agent" $i.agent | toJson | sha256sum }}
{{- end }}

{{- define "bond-injector.webhook.priorityClassName" -}}
{{- if .Values.webhook.priorityClassName }}
{{- .Values.webhook.priorityClassName }}
{{- else if .Values.webhook.priorityClass.create }}
{{- include "bond-injector.webhook.fullname" . }}
{{- end }}
{{- end }}

{{/*
One release per cluster: two would both mutate every labelled pod and install their plugins to the
same node path and helper socket. Each release's webhook configuration carries the part-of label
and helm's release annotations, so a second `helm install` (or `--dry-run=server`) finds the first
and stops here. `helm template` has no cluster: lookup returns nothing and this passes.
*/}}
{{- define "bond-injector.singleRelease" -}}
{{- $configs := lookup "admissionregistration.k8s.io/v1" "MutatingWebhookConfiguration" "" "" }}
{{- range (get $configs "items" | default list) }}
{{- $labels := .metadata.labels | default dict }}
{{- $annotations := .metadata.annotations | default dict }}
{{- if eq (get $labels "app.kubernetes.io/part-of") "bond-injector" }}
{{- $release := get $annotations "meta.helm.sh/release-name" | default "(not installed by helm)" }}
{{- $namespace := get $annotations "meta.helm.sh/release-namespace" | default "?" }}
{{- if not (and (eq $release $.Release.Name) (eq $namespace $.Release.Namespace)) }}
{{- fail (printf "bond-injector is already installed on this cluster by release %q in namespace %q (mutatingwebhookconfiguration %s); one release per cluster, since two would both mutate labelled pods and install the plugin to the same node path and helper socket: change that release with `helm upgrade %s -n %s`, or `helm uninstall` it first" $release $namespace .metadata.name $release $namespace) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* `namespace/name` of a NAD the default profile uses, so pods of any namespace find it. */}}
{{- define "bond-injector.networkRef" -}}
{{- printf "%s/%s" (include "bond-injector.networksNamespace" .ctx) .name }}
{{- end }}

{{/* The profiles file the webhook reads (`profiles.yaml` in the ConfigMap). */}}
{{- define "bond-injector.profiles" -}}
{{- $profiles := dict }}
{{- if .Values.defaultProfile.enabled }}
{{- $legs := list }}
{{- range $key := keys .Values.networks.legs | sortAlpha }}
{{- $leg := get $.Values.networks.legs $key }}
{{- $legs = append $legs (dict "network" (include "bond-injector.networkRef" (dict "ctx" $ "name" $leg.name)) "interface" $leg.interface) }}
{{- end }}
{{- $bond := .Values.networks.bond }}
{{- $_ := set $profiles "default" (dict
      "legs" $legs
      "bond" (dict "network" (include "bond-injector.networkRef" (dict "ctx" $ "name" $bond.name)) "interface" $bond.interface)
      "requireDistinctPools" .Values.defaultProfile.requireDistinctPools
      "readinessGate" .Values.defaultProfile.readinessGate
      "allowedNamespaces" .Values.defaultProfile.allowedNamespaces) }}
{{- end }}
{{- $profiles = merge (deepCopy .Values.profiles) $profiles }}
{{- if not $profiles }}
{{- fail "no bond profile: enable defaultProfile or define one under `profiles`" }}
{{- end }}
{{- toYaml (dict "profiles" $profiles) }}
{{- end }}

{{/*
Checks across values that the schema cannot express with a readable message.
*/}}
{{- define "bond-injector.validate" -}}
{{- include "bond-injector.singleRelease" . }}
{{- if and .Values.webhook.url (ne .Values.certificates.mode "external") }}
{{- fail (printf "webhook.url is set, so the webhook runs outside the cluster: set certificates.mode=external and certificates.external.caBundle to the base64 CA that signed its certificate (mode %q only issues certificates for the in-cluster Service)" .Values.certificates.mode) }}
{{- end }}
{{- if and (eq .Values.certificates.mode "external") (not .Values.certificates.external.caBundle) }}
{{- fail "certificates.mode=external needs certificates.external.caBundle (base64 of the PEM CA bundle)" }}
{{- end }}
{{- if and (eq .Values.certificates.mode "external") (not .Values.webhook.url) (not .Values.certificates.external.secretName) }}
{{- fail "certificates.mode=external with an in-cluster webhook needs certificates.external.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- $legs := .Values.networks.legs }}
{{- if lt (len $legs) 2 }}
{{- fail "networks.legs needs two legs (one per NIC) for a bond" }}
{{- end }}
{{- $ifaces := list .Values.networks.bond.interface }}
{{- range $key, $leg := $legs }}
{{- if has $leg.interface $ifaces }}
{{- fail (printf "networks.legs.%s.interface %q is used twice; each leg and the bond need their own interface name" $key $leg.interface) }}
{{- end }}
{{- $ifaces = append $ifaces $leg.interface }}
{{- end }}
{{- end }}

{{/*
The certgen identities of builtin mode. The hook Jobs need theirs before the release's own
resources exist (pre-install), so it is made as hooks and removed after each hook phase; the
renewal CronJob needs one that lives with the release. Same rules, two names.
*/}}
{{- define "bond-injector.certgen.variants" -}}
{{- $variants := list }}
{{- if eq .Values.certificates.mode "builtin" }}
{{- $variants = append $variants (dict "name" (printf "%s-hook" (include "bond-injector.certgen.fullname" .)) "hook" true) }}
{{- if .Values.certificates.builtin.renewCronJob }}
{{- $variants = append $variants (dict "name" (include "bond-injector.certgen.fullname" .) "hook" false) }}
{{- end }}
{{- end }}
{{- toJson $variants }}
{{- end }}

{{- define "bond-injector.certgen.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade,post-install,post-upgrade
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/* The certgen container: `bond-injector certs ensure` with the release's names. */}}
{{- define "bond-injector.certgen.container" -}}
name: certs
image: {{ include "bond-injector.image" (dict "ctx" .ctx "image" .ctx.Values.webhook.image) }}
imagePullPolicy: {{ .ctx.Values.webhook.image.pullPolicy }}
command: ["bond-injector"]
args:
  - certs
  - ensure
  - --namespace={{ .ctx.Release.Namespace }}
  - --secret={{ include "bond-injector.tlsSecretName" .ctx }}
  - --service={{ include "bond-injector.webhook.fullname" .ctx }}
  - --renew-before={{ .ctx.Values.certificates.renewBefore }}
  - --validity={{ .ctx.Values.certificates.validity }}
  - --ca-validity={{ .ctx.Values.certificates.caValidity }}
  {{- if .patch }}
  - --webhook-config={{ include "bond-injector.webhookConfigName" .ctx }}
  {{- end }}
resources:
  {{- toYaml .ctx.Values.certificates.builtin.resources | nindent 2 }}
securityContext:
  {{- include "bond-injector.restrictedContainerSecurityContext" .ctx | nindent 2 }}
{{- end }}

{{- define "bond-injector.certgen.podSpec" -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: true
restartPolicy: OnFailure
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "bond-injector.restrictedPodSecurityContext" .ctx | nindent 2 }}
{{- with .ctx.Values.webhook.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - {{- include "bond-injector.certgen.container" . | nindent 4 }}
{{- end }}

{{/*
A certgen hook Job for one phase. Two phases, as the webhook's pods need the Secret before they
can start (pre) and the webhook configuration exists only once the release's resources are
applied (post); the post run finds the Secret healthy and only patches caBundle.
*/}}
{{- define "bond-injector.certgen.job" -}}
{{- $ := .ctx }}
{{- if eq $.Values.certificates.mode "builtin" }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "bond-injector.certgen.fullname" $ }}-{{ .phase }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "bond-injector.labels" (dict "ctx" $ "component" "certgen") | nindent 4 }}
  annotations:
    helm.sh/hook: {{ .phase }}-install,{{ .phase }}-upgrade
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: 6
  activeDeadlineSeconds: {{ $.Values.certificates.builtin.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: 3600
  template:
    metadata:
      labels:
        {{- include "bond-injector.labels" (dict "ctx" $ "component" "certgen") | nindent 8 }}
    spec:
      {{- include "bond-injector.certgen.podSpec" (dict "ctx" $ "serviceAccount" (printf "%s-hook" (include "bond-injector.certgen.fullname" $)) "patch" (eq .phase "post")) | nindent 6 }}
{{- end }}
{{- end }}
