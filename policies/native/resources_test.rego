package kubernetes.admission.resources_test

import data.kubernetes.admission.resources

pod(resources) = {"request": {
	"kind": {"kind": "Pod"},
	"object": {"spec": {"containers": [{"name": "app", "image": "app:1", "resources": resources}]}},
}}

test_limits_allowed {
	count(resources.deny) == 0 with input as pod({"limits": {"cpu": "500m", "memory": "128Mi"}})
}

test_missing_memory_denied {
	resources.deny == {"container \"app\" has no memory limit (resources.limits.memory)"} with input as pod({"limits": {"cpu": "1"}})
}

test_requests_are_not_limits {
	count(resources.deny) == 2 with input as pod({"requests": {"cpu": "1", "memory": "1Gi"}})
}

test_no_resources_denied {
	count(resources.deny) == 2 with input as {"request": {"kind": {"kind": "Pod"}, "object": {"spec": {"containers": [{"name": "app"}]}}}}
}
