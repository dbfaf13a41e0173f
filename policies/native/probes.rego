# Instrumented pods (annotation otel-admission.io/status) have readiness and
# liveness probes on every app container: a pod that reports telemetry but
# cannot report health is half observable. Known sidecars are exempt. v0 syntax.
package kubernetes.admission.probes

import data.lib.k8s

sidecars := {"istio-proxy", "linkerd-proxy", "otc-container", "cloudsql-proxy"}

instrumented {
	k8s.pod_meta.annotations["otel-admission.io/status"]
}

deny[msg] {
	instrumented
	c := k8s.pod_spec.containers[_]
	not sidecars[c.name]
	probe := ["readinessProbe", "livenessProbe"][_]
	not c[probe]
	msg := sprintf("container %q is instrumented but has no %s", [c.name, probe])
}
