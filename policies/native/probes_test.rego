package kubernetes.admission.probes_test

import data.kubernetes.admission.probes

pod(annotations, containers) = {"request": {"kind": {"kind": "Pod"}, "object": {
	"metadata": {"annotations": annotations},
	"spec": {"containers": containers},
}}}

status := {"otel-admission.io/status": "{\"v\":1}"}

probe := {"httpGet": {"path": "/health/live", "port": "health"}}

test_uninstrumented_pod_needs_no_probes {
	count(probes.warn) == 0 with input as pod({}, [{"name": "app"}])
}

test_instrumented_pod_with_probes_allowed {
	count(probes.warn) == 0 with input as pod(status, [{"name": "app", "readinessProbe": probe, "livenessProbe": probe}])
}

test_instrumented_pod_without_probes_warned {
	probes.warn == {
		"container \"app\" is instrumented but has no readinessProbe (otel-admission.io/probes: \"true\" adds one)",
		"container \"app\" is instrumented but has no livenessProbe (otel-admission.io/probes: \"true\" adds one)",
	} with input as pod(status, [{"name": "app"}])
}

test_sidecars_exempt {
	count(probes.warn) == 0 with input as pod(status, [
		{"name": "app", "readinessProbe": probe, "livenessProbe": probe},
		{"name": "otc-container"},
	])
}

test_never_denies {
	not probes.deny with input as pod(status, [{"name": "app"}])
}
