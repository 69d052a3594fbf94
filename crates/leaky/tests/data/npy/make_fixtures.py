"""Regenerate the .npy fixtures used by src/data/npy.rs tests (numpy >= 1.17).

Run from this directory: python make_fixtures.py
"""
import numpy as np

x = np.arange(24, dtype=np.float32).reshape(4, 2, 3) / 4
y = np.array([0, 2, 1, 2], dtype=np.int64)
np.save("x_f4_3d.npy", x)  # format 1.0
np.save("y_i8.npy", y)
with open("x_f8_v2.npy", "wb") as f:
    np.lib.format.write_array(f, x.reshape(4, 6).astype(np.float64), version=(2, 0))
np.save("x_u1.npy", np.arange(8, dtype=np.uint8).reshape(4, 2))
np.save("y_u1.npy", y.astype(np.uint8))
np.save("x_fortran.npy", np.asfortranarray(x.reshape(4, 6)))
np.save("x_be.npy", x.reshape(4, 6).astype(">f4"))
np.save("y_f8.npy", y.astype(np.float64))
np.save("y_neg.npy", np.array([0, -1, 1, 2], dtype=np.int16))
# .npz archives: named arrays (compressed) and positional ones (stored).
np.savez_compressed("xy.npz", x=x, y=y)
np.savez("arr.npz", x.reshape(4, 6), y)
np.savez("other_names.npz", features=x, labels=y)
