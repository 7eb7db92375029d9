"""Image and geometry metrics (PSNR/SSIM/LPIPS wrappers)."""
