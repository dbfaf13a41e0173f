# Resource limits on every container, init containers included. Written in
# Rego v0 syntax on purpose: kube-mgmt policies in the wild are v0.
package kubernetes.admission.resources

import data.lib.k8s

deny[msg] {
	c := k8s.containers[_]
	r := ["cpu", "memory"][_]
	not c.resources.limits[r]
	msg := sprintf("container %q has no %s limit (resources.limits.%s)", [c.name, r, r])
}
