// The pod sandbox ("pause") process for the locally built registry.k8s.io/pause image.
module mlops-drill.local/kindbuild/pause

go 1.22
