"""Optional applications on top of ccnet; each needs its extra (``pip install 'ccnet-pytorch[app]'``
for `ccnet.app.explorer`, the ``ccnet explore`` page). Importing this package needs none."""
