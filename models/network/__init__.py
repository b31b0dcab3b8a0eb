"""The networks and how they are sampled: the video transformer (teacher and student), its KV cache, the flow
schedule, the samplers (the teacher's, the student's streaming step, generation), the prompt encoder, the optional
autoencoder, and loading trained ones. Imports models.io only; the runtime imports this and nothing of training.
"""
