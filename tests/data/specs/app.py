print("launched")
