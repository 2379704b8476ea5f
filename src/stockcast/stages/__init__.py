"""One module per ``dvc.yaml`` stage: read the previous stage's files, call the pure modules,
write this stage's outputs atomically. Nothing here knows of Prefect; ``flows/stages`` wraps
each ``run`` in a flow, and ``dvc.yaml`` names each module as its stage's dependency."""
