from gatewayctl.cli import main

main()
