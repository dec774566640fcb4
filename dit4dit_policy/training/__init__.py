"""Training DiT4DiT: `dit4dit train --config config/train_<name>.yaml` (one process, or one per GPU
under torchrun), `dit4dit plot <run dir>`.

`train(load_train_config(path))` is the same in Python. The run folder's layout is described in
`run_folder.py`; the config keys in `config.py`.
"""
