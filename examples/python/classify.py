import qarep
model = qarep.Model("model.qarep")
session = qarep.Session(model, threads=0, max_batch=8)
session.run(model.preprocess(qarep.decode_image("photo.jpg", model))[None])
print(session.top_k(5)[0])
