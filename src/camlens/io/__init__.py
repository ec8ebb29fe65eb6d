"""The edges: image files and preprocessing, model loading, the model zoo, files written atomically, run folders.

``images`` (load_image, preprocess, sample_images), ``models`` (load_model), ``zoo`` (the seeds'
models), ``files`` (atomic_write), ``sources`` (the images of a dataset run: files, folders, globs, lists,
Datasets), ``run`` (the run folder: its contract, writer and reader).
"""
