"""The shared base every stage uses: command line, options, runtime set-up, manifests,
checkpoints, run folders, label colours. Nothing here imports a stage package.
"""
