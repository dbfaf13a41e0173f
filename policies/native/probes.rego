# Instrumented pods (annotation otel-admission.io/status) have readiness and
# liveness probes on every app container: a pod that reports telemetry but
# cannot report health is half observable. Known sidecars are exempt. v0 syntax.
#
# A warning, not a denial, even under `policies.enforcement: enforce`: the
# pod is only "instrumented" because our own injection made it so, and a
# shipped policy never denies a pod for what the injection added (SPEC §7).
# The fix it suggests, otel-admission.io/probes: "true", adds the probes.
# To deny instead, rename `warn` to `deny` below.
package kubernetes.admission.probes

import data.lib.k8s

# Known sidecars, ours included: the collector (otc-container) and the Go
# agent (opentelemetry-auto-instrumentation) have no health endpoint to probe.
sidecars := {"istio-proxy", "linkerd-proxy", "otc-container", "opentelemetry-auto-instrumentation", "cloudsql-proxy"}

instrumented {
	k8s.pod_meta.annotations["otel-admission.io/status"]
}

warn[msg] {
	instrumented
	c := k8s.pod_spec.containers[_]
	not sidecars[c.name]
	probe := ["readinessProbe", "livenessProbe"][_]
	not c[probe]
	msg := sprintf("container %q is instrumented but has no %s (otel-admission.io/probes: \"true\" adds one)", [c.name, probe])
}
