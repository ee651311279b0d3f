"""Peers, each pinned to one thread, as call(x, y) -> result for 2-D float32 rows (softmax over the
last axis). `fresh` peers allocate their output (compare with twopass.softmax(x)); `out` peers
write into a preallocated y (compare with twopass.softmax(x, out=y))."""
import os

import numpy as np


def numpy_softmax(x, y):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def available_peers(missing=None):
    """{name: (call, kind)} for the peers installed here; kind is 'fresh' or 'out'. Peers that are not
    installed are appended to `missing` as 'peer (module not found)', so a run can say so."""
    peers = {"numpy": (numpy_softmax, "fresh")}

    def skip(peer, error):
        if missing is not None:
            missing.append(f"{peer} ({error.name} not found)")
    try:
        import scipy.special

        peers["scipy.special.softmax"] = (lambda x, y: scipy.special.softmax(x, axis=-1), "fresh")
    except ImportError as error:
        skip("scipy.special.softmax", error)
    try:
        import torch

        torch.set_num_threads(1)

        def torch_fresh(x, y):
            return torch.softmax(torch.from_numpy(x), -1).numpy()

        def torch_out(x, y):
            torch.softmax(torch.from_numpy(x), -1, out=torch.from_numpy(y))
            return y

        peers[f"torch {torch.__version__}"] = (torch_fresh, "fresh")
        peers[f"torch {torch.__version__} out="] = (torch_out, "out")
    except ImportError as error:
        skip("torch.softmax", error)
    try:
        import onnxruntime
        from onnx import TensorProto, helper

        node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
        graph = helper.make_graph([node], "softmax",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])

        def ort_fresh(x, y):
            return session.run(None, {"x": x})[0]

        bindings = {}  # one IO binding per (input, output) buffer pair, made once, as a server would

        def ort_out(x, y):
            key = (x.ctypes.data, y.ctypes.data, x.shape)
            if key not in bindings:
                binding = session.io_binding()
                binding.bind_cpu_input("x", x)
                binding.bind_output("y", "cpu", 0, np.float32, y.shape, y.ctypes.data)
                bindings[key] = binding
            session.run_with_iobinding(bindings[key])
            return y

        peers[f"onnxruntime {onnxruntime.__version__}"] = (ort_fresh, "fresh")
        peers[f"onnxruntime {onnxruntime.__version__} out="] = (ort_out, "out")
    except ImportError as error:
        skip("ONNX Runtime", error)
    return peers


def pin_one_thread():
    """Before importing peers: one thread for OpenMP/MKL/OpenBLAS pools."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
