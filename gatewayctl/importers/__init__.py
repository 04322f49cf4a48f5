"""Other tools' configurations as gatewayctl manifests (`gatewayctl import`)."""
