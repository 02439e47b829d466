# Spine Lab as a Hugging Face Docker Space (or any container host): Streamlit on port 7860, CPU torch.
# Build: docker build -t spine-lab .    Run: docker run -p 7860:7860 spine-lab
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=False \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    MALLOC_ARENA_MAX=2 \
    HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH

# curl for the HEALTHCHECK only; OpenCV headless needs no libGL
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl=7.* \
    && rm -rf /var/lib/apt/lists/*

# Hugging Face Spaces run the container as uid 1000
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# CPU-only torch from the PyTorch index (the CUDA wheels are ~5 GB), then everything else pinned in
# requirements.txt except torch/torchvision; then the OpenCV clash fix (ultralytics pulls opencv-python,
# which would overwrite the headless cv2).
COPY --chown=user:user requirements.txt pyproject.toml README.md ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
    && grep -v -E '^(torch|torchvision)==' requirements.txt > /tmp/requirements-no-torch.txt \
    && pip install -r /tmp/requirements-no-torch.txt \
    && (pip uninstall -y opencv-python || true) \
    && pip install --force-reinstall --no-deps "$(grep '^opencv-python-headless==' requirements.txt)"

COPY --chown=user:user . .
RUN pip install --no-deps -e . \
    && mkdir -p /home/user/app/runs /home/user/.cache/spine_models \
    && chown -R user:user /home/user

USER 1000
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["curl", "-fsS", "http://localhost:7860/_stcore/health"]
CMD ["streamlit", "run", "app.py", "--server.port", "7860", "--server.address", "0.0.0.0", \
     "--server.headless", "true", "--browser.gatherUsageStats", "false"]
