# Helpers for the native policies: where the pod spec and pod metadata live
# in each workload kind. Not under kubernetes.admission, so not enforced.
package lib.k8s

import rego.v1

obj := input.request.object

kind := input.request.kind.kind

template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}

pod_spec = obj.spec if kind == "Pod"

pod_spec = obj.spec.template.spec if template_kinds[kind]

pod_spec = obj.spec.jobTemplate.spec.template.spec if kind == "CronJob"

pod_meta = obj.metadata if kind == "Pod"

pod_meta = obj.spec.template.metadata if template_kinds[kind]

pod_meta = obj.spec.jobTemplate.spec.template.metadata if kind == "CronJob"

# Every container that runs: app containers and init containers (including
# native sidecars).
containers contains c if some c in pod_spec.containers

containers contains c if some c in pod_spec.initContainers
