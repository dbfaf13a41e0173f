# No `:latest` and no untagged images: a pinned image is what makes a
# rollout, and the telemetry's service.version, reproducible.
package kubernetes.admission.images

import data.lib.k8s
import rego.v1

deny contains msg if {
	some c in k8s.containers
	not pinned(c.image)
	msg := sprintf("container %q: image %q has no tag or digest; pin a version", [c.name, c.image])
}

deny contains msg if {
	some c in k8s.containers
	tag(c.image) == "latest"
	msg := sprintf("container %q: image %q uses the :latest tag; pin a version", [c.name, c.image])
}

pinned(image) if contains(image, "@")

pinned(image) if tag(image)

# The tag is after the last ':' of the last path segment (a registry port
# is in an earlier segment).
tag(image) := t if {
	not contains(image, "@")
	segments := split(image, "/")
	last := segments[count(segments) - 1]
	parts := split(last, ":")
	count(parts) == 2
	t := parts[1]
}
