package kubernetes.admission.labels_test

import data.kubernetes.admission.labels
import rego.v1

deployment(pod_labels) := {"request": {"kind": {"kind": "Deployment"}, "object": {
	"metadata": {"labels": {"app.kubernetes.io/name": "not-the-pod"}},
	"spec": {"template": {"metadata": {"labels": pod_labels}, "spec": {"containers": []}}},
}}}

test_both_labels_allowed if {
	inp := deployment({"app.kubernetes.io/name": "shop", "app.kubernetes.io/version": "1.2"})
	count(labels.deny) == 0 with input as inp
	count(labels.warn) == 0 with input as inp
}

test_missing_name_on_pod_template_denied if {
	labels.deny == {"Deployment: pods must carry the label app.kubernetes.io/name"} with input as deployment({"app.kubernetes.io/version": "1"})
}

test_missing_version_warns if {
	inp := deployment({"app.kubernetes.io/name": "shop"})
	count(labels.deny) == 0 with input as inp
	labels.warn == {"Deployment: pods should carry the label app.kubernetes.io/version"} with input as inp
}

test_pod_without_labels if {
	inp := {"request": {"kind": {"kind": "Pod"}, "object": {"metadata": {}, "spec": {"containers": []}}}}
	count(labels.deny) == 1 with input as inp
	count(labels.warn) == 1 with input as inp
}

test_services_ignored if {
	count(labels.deny) == 0 with input as {"request": {"kind": {"kind": "Service"}, "object": {"spec": {}}}}
}
