"""The edges: image files and preprocessing, model loading, the model zoo, files written atomically.

``images`` (load_image, preprocess, sample_images), ``models`` (load_model), ``zoo`` (the seeds'
models), ``files`` (atomic_write).
"""
