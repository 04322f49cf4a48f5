"""The mock provider server, standard library only; start it via gatewayctl.local.mock_provider."""
