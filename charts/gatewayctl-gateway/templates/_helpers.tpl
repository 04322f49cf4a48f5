{{/* The gateway name: the stem of every object name and the gatewayctl.dev/gateway label. */}}
{{- define "gw.name" -}}
{{- .Values.gateway.name | default .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pod selector; the same labels `gatewayctl render` uses, so both select alike. */}}
{{- define "gw.selectorLabels" -}}
app.kubernetes.io/component: proxy
app.kubernetes.io/instance: {{ include "gw.name" . }}
app.kubernetes.io/name: gatewayctl-gateway
{{- end -}}

{{/* The rate limit service's pods (global limits): the gateway's labels, component ratelimit. */}}
{{- define "gw.cacheStoreSelectorLabels" -}}
app.kubernetes.io/component: cache-store
app.kubernetes.io/instance: {{ include "gw.name" . }}
app.kubernetes.io/name: gatewayctl-gateway
{{- end -}}

{{- define "gw.rateLimitSelectorLabels" -}}
app.kubernetes.io/component: ratelimit
app.kubernetes.io/instance: {{ include "gw.name" . }}
app.kubernetes.io/name: gatewayctl-gateway
{{- end -}}

{{/* Object labels; call with (dict "ctx" $ "component" "proxy"). Helm, not gatewayctl, is
     the manager here, so `gatewayctl apply` never prunes these objects. */}}
{{- define "gw.labels" -}}
{{- $ctx := .ctx -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ include "gw.name" $ctx }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/name: gatewayctl-gateway
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
gatewayctl.dev/gateway: {{ include "gw.name" $ctx }}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "gw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "gw.name" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "gw.image" -}}
{{- $image := .Values.image.repository -}}
{{- if .Values.image.tag }}{{ $image = printf "%s:%s" $image .Values.image.tag }}{{ end -}}
{{- if .Values.image.digest }}{{ $image = printf "%s@%s" $image .Values.image.digest }}{{ end -}}
{{- $image -}}
{{- end -}}

{{- define "gw.containerPort" -}}
{{- .Values.listener.containerPort | default .Values.listener.port | int -}}
{{- end -}}

{{/* "true" when the compiled config is given inline, "" when existing ConfigMaps are used. */}}
{{- define "gw.inlineConfig" -}}
{{- $c := .Values.config -}}
{{- if or $c.bootstrap $c.lds $c.cds $c.rds $c.ldsGz $c.cdsGz $c.rdsGz $c.cdsSha256 -}}true{{- end -}}
{{- end -}}

{{- define "gw.bootstrapConfigMap" -}}
{{- if include "gw.inlineConfig" . -}}
{{- printf "%s-bootstrap" (include "gw.name" .) -}}
{{- else -}}
{{- .Values.config.existingBootstrapConfigMap | default (printf "%s-bootstrap" (include "gw.name" .)) -}}
{{- end -}}
{{- end -}}

{{- define "gw.configConfigMap" -}}
{{- if include "gw.inlineConfig" . -}}
{{- printf "%s-config" (include "gw.name" .) -}}
{{- else -}}
{{- .Values.config.existingConfigMap | default (printf "%s-config" (include "gw.name" .)) -}}
{{- end -}}
{{- end -}}

{{/* Only while the config is packed: cds.json.gz, projected beside <name>-config. */}}
{{- define "gw.configClustersConfigMap" -}}
{{- printf "%s-clusters" (include "gw.configConfigMap" .) -}}
{{- end -}}

{{/* Fails the render with one clear message for inconsistent values. */}}
{{- define "gw.validate" -}}
{{- if include "gw.inlineConfig" . -}}
{{- $c := .Values.config -}}
{{- $plain := and $c.bootstrap $c.lds $c.cds $c.rds (not $c.ldsGz) (not $c.cdsGz) (not $c.rdsGz) -}}
{{- $packed := and $c.bootstrap $c.ldsGz $c.cdsGz $c.rdsGz $c.cdsSha256 (not $c.lds) (not $c.cds) (not $c.rds) -}}
{{- if not (or $plain $packed) -}}
{{- fail "config: give all of config.bootstrap, config.lds, config.rds and config.cds, or config.bootstrap, config.ldsGz, config.rdsGz, config.cdsGz and config.cdsSha256 (gatewayctl render --format helm-values writes them), or none of them to use existing ConfigMaps" -}}
{{- end -}}
{{- if or .Values.config.existingConfigMap .Values.config.existingBootstrapConfigMap -}}
{{- fail "config: set either inline config (config.bootstrap/lds/rds/cds) or config.existingConfigMap/existingBootstrapConfigMap, not both" -}}
{{- end -}}
{{- end -}}
{{- if gt (int .Values.replicas.min) (int .Values.replicas.max) -}}
{{- fail (printf "replicas: min (%d) is greater than max (%d)" (int .Values.replicas.min) (int .Values.replicas.max)) -}}
{{- end -}}
{{- end -}}

{{/* The same name gatewayctl gives a Secret's volume: secret-<name>, or a shortened, hashed
     form when that is not a valid volume name. */}}
{{- define "gw.secretVolumeName" -}}
{{- $name := printf "secret-%s" . -}}
{{- if and (le (len $name) 63) (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- $name -}}
{{- else -}}
{{- $digest := sha256sum . | trunc 10 -}}
{{- $stem := regexReplaceAll "[^-a-z0-9]+" . "-" | trunc 40 | trimAll "-" -}}
{{- if $stem }}{{ printf "secret-%s-%s" $stem $digest }}{{ else }}{{ printf "secret-%s" $digest }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* What only a restart picks up: the bootstrap and the set of mounted secrets and keys.
     The same text gatewayctl hashes, so both give pods the same checksum. */}}
{{- define "gw.restartChecksum" -}}
{{- $lines := list -}}
{{- if include "gw.inlineConfig" . -}}
{{- $lines = append $lines (printf "bootstrap.yaml sha256:%s" (sha256sum .Values.config.bootstrap)) -}}
{{- else -}}
{{- $lines = append $lines (printf "bootstrap-configmap %s" (include "gw.bootstrapConfigMap" .)) -}}
{{- end -}}
{{- range .Values.secrets.mounts -}}
{{- $lines = append $lines (printf "secret %s %s" .name (join "," .keys)) -}}
{{- end -}}
{{- printf "%s\n" (join "\n" $lines) | sha256sum -}}
{{- end -}}

{{/* preStop: through the admin API on loopback, fail the readiness check and start Envoy's
     graceful drain, then keep serving. */}}
{{- define "gw.drainScript" -}}
{{- $host := .Values.admin.address -}}
{{- if has $host (list "0.0.0.0" "::" "") }}{{ $host = "127.0.0.1" }}{{ end -}}
{{- $posts := list -}}
{{- range list "/healthcheck/fail" "/drain_listeners?graceful" -}}
{{- $request := printf "POST %s HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n" . -}}
{{- $posts = append $posts (printf "(exec 3<>/dev/tcp/%s/%d && printf '%s' >&3 && timeout 5 cat <&3 >/dev/null) || true" $host (int $.Values.admin.port) $request) -}}
{{- end -}}
{{- printf "%s; sleep %d" (join "; " $posts) (int .Values.envoy.drainSeconds) -}}
{{- end -}}

{{/* The init container (args: once) and the sidecar (args: watch SECONDS) that publish the
     config volume (<name>-config, and <name>-config-clusters when packed), plain or gzipped,
     into the emptyDir Envoy watches, with kubelet's atomic ..data swap. Call with a dict: name, args, image, pullPolicy, dir, script,
     resources. The same containers as gatewayctl's render (gatewayctl/render/k8s/unpack.py). */}}
{{- define "gw.unpackContainer" -}}
- name: {{ .name }}
  image: {{ .image }}
  imagePullPolicy: {{ .pullPolicy }}
  command:
    {{- concat (list "sh" "-c" .script "config-unpack" (first .args) "/etc/gatewayctl/configmap" .dir) (rest .args) | toYaml | nindent 4 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    allowPrivilegeEscalation: false
    capabilities:
      drop: [ALL]
    privileged: false
    readOnlyRootFilesystem: true
    runAsGroup: 101
    runAsNonRoot: true
    runAsUser: 101
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    - name: config
      mountPath: /etc/gatewayctl/configmap
      readOnly: true
    - name: envoy-config
      mountPath: {{ .dir }}
{{- end -}}

{{/* How the services beside the gateway reach your Redis (values `redis`): the official
     rate limit service's variables, the password taken from its Secret by secretKeyRef (never
     a value in the chart's output); with a username, REDIS_AUTH refers to REDIS_PASSWORD. */}}
{{- define "gw.redisChecks" -}}
{{- $r := .Values.redis -}}
{{- if and $r.username (not $r.passwordSecretRef.name) }}{{ fail "redis.username needs redis.passwordSecretRef (an ACL user logs in with a password)" }}{{ end -}}
{{- if and $r.passwordSecretRef.name (not $r.passwordSecretRef.key) }}{{ fail "redis.passwordSecretRef needs both name and key" }}{{ end -}}
{{- if and $r.caSecretRef.name (not $r.tls) }}{{ fail "redis.caSecretRef is only used with redis.tls: true" }}{{ end -}}
{{- if and $r.caSecretRef.name (not $r.caSecretRef.key) }}{{ fail "redis.caSecretRef needs both name and key" }}{{ end -}}
{{- end -}}

{{- define "gw.redisHasEnv" -}}
{{- if or .Values.redis.passwordSecretRef.name .Values.redis.tls }}true{{ end -}}
{{- end -}}

{{- define "gw.redisHasCA" -}}
{{- if and .Values.redis.tls .Values.redis.caSecretRef.name }}true{{ end -}}
{{- end -}}

{{- define "gw.redisEnv" -}}
{{- $r := .Values.redis -}}
{{- with $r.passwordSecretRef.name }}
{{- if $r.username }}
- name: REDIS_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ . | quote }}, key: {{ $r.passwordSecretRef.key | quote }}}}
- {name: REDIS_AUTH, value: {{ printf "%s:$(REDIS_PASSWORD)" $r.username | quote }}}
{{- else }}
- name: REDIS_AUTH
  valueFrom: {secretKeyRef: {name: {{ . | quote }}, key: {{ $r.passwordSecretRef.key | quote }}}}
{{- end }}
{{- end }}
{{- if $r.tls }}
- {name: REDIS_TLS, value: "true"}
{{- if $r.caSecretRef.name }}
- {name: REDIS_TLS_CACERT, value: /etc/gatewayctl/redis-ca/ca.crt}
{{- end }}
{{- end }}
{{- end -}}

{{- define "gw.redisVolumeMount" -}}
- {name: redis-ca, mountPath: /etc/gatewayctl/redis-ca, readOnly: true}
{{- end -}}

{{- define "gw.redisVolume" -}}
- name: redis-ca
  secret:
    secretName: {{ .Values.redis.caSecretRef.name | quote }}
    items: [{key: {{ .Values.redis.caSecretRef.key | quote }}, path: ca.crt}]
{{- end -}}
