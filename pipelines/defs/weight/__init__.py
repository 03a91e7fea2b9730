"""Stage 4: design, nonresponse and calibrated weights with design variables and replicates."""
