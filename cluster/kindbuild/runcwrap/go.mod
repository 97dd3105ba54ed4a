// The OCI runtime wrapper for hosts whose capability bounding set lacks CAP_SYS_RESOURCE (no dependencies).
module mlops-drill.local/kindbuild/runcwrap

go 1.22
