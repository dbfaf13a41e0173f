package kubernetes.admission.probes_test

import data.kubernetes.admission.probes

pod(annotations, containers) = {"request": {"kind": {"kind": "Pod"}, "object": {
	"metadata": {"annotations": annotations},
	"spec": {"containers": containers},
}}}

status := {"otel-admission.io/status": "{\"v\":1}"}

probe := {"httpGet": {"path": "/health/live", "port": "health"}}

test_uninstrumented_pod_needs_no_probes {
	count(probes.deny) == 0 with input as pod({}, [{"name": "app"}])
}

test_instrumented_pod_with_probes_allowed {
	count(probes.deny) == 0 with input as pod(status, [{"name": "app", "readinessProbe": probe, "livenessProbe": probe}])
}

test_instrumented_pod_without_probes_denied {
	probes.deny == {
		"container \"app\" is instrumented but has no readinessProbe",
		"container \"app\" is instrumented but has no livenessProbe",
	} with input as pod(status, [{"name": "app"}])
}

test_sidecars_exempt {
	count(probes.deny) == 0 with input as pod(status, [
		{"name": "app", "readinessProbe": probe, "livenessProbe": probe},
		{"name": "otc-container"},
	])
}
