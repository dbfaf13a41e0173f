package kubernetes.admission.images_test

import data.kubernetes.admission.images
import rego.v1

review(image) := {"request": {
	"kind": {"group": "", "version": "v1", "kind": "Pod"},
	"operation": "CREATE",
	"object": {"spec": {"containers": [{"name": "app", "image": image}]}},
}}

test_pinned_tag_allowed if {
	count(images.deny) == 0 with input as review("ghcr.io/acme/app:1.4.2")
}

test_digest_allowed if {
	count(images.deny) == 0 with input as review("ghcr.io/acme/app@sha256:0123456789abcdef")
}

test_registry_port_is_not_a_tag if {
	images.deny == {"container \"app\": image \"registry:5000/app\" has no tag or digest; pin a version"} with input as review("registry:5000/app")
}

test_registry_port_with_tag_allowed if {
	count(images.deny) == 0 with input as review("registry:5000/app:2.0")
}

test_latest_denied if {
	images.deny == {"container \"app\": image \"nginx:latest\" uses the :latest tag; pin a version"} with input as review("nginx:latest")
}

test_untagged_denied if {
	count(images.deny) == 1 with input as review("nginx")
}

test_init_containers_checked if {
	r := {"request": {"kind": {"kind": "Deployment"}, "object": {"spec": {"template": {"spec": {
		"containers": [{"name": "app", "image": "app:1"}],
		"initContainers": [{"name": "init", "image": "busybox"}],
	}}}}}}
	count(images.deny) == 1 with input as r
}

test_other_kinds_ignored if {
	count(images.deny) == 0 with input as {"request": {"kind": {"kind": "ConfigMap"}, "object": {"data": {}}}}
}
