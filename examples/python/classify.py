import numpy as np, qarep
from PIL import Image
model = qarep.Model("model.qarep")
session = qarep.Session(model, threads=0, max_batch=8)
session.run(model.preprocess(np.asarray(Image.open("photo.jpg").convert("RGB")))[None])
print(session.top_k(5)[0])
