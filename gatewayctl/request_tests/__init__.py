"""`gatewayctl test`: RequestTest cases run offline (through explain) or through the local
gateway (live.py), reported as text and JUnit (report.py)."""
