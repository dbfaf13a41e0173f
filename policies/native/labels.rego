# Workloads carry app.kubernetes.io/name and app.kubernetes.io/version on
# their pods, so telemetry is named (service.name, service.version). A
# missing name is denied; a missing version only warns, because
# service.version falls back to the image tag.
package kubernetes.admission.labels

import data.lib.k8s
import rego.v1

deny contains msg if {
	k8s.pod_spec
	not k8s.pod_meta.labels["app.kubernetes.io/name"]
	msg := sprintf("%s: pods must carry the label app.kubernetes.io/name", [k8s.kind])
}

warn contains msg if {
	k8s.pod_spec
	not k8s.pod_meta.labels["app.kubernetes.io/version"]
	msg := sprintf("%s: pods should carry the label app.kubernetes.io/version", [k8s.kind])
}
