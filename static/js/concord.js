// Concord's few lines of JavaScript; everything else is htmx attributes in the templates.
document.addEventListener("htmx:responseError", (event) => {
  // A section that cannot load says so instead of spinning for ever.
  const target = event.detail.target;
  if (!target || !target.classList.contains("section")) return;
  const loading = target.querySelector(".loading");
  if (loading) {
    loading.classList.add("load-error");
    loading.removeAttribute("aria-busy");
    loading.textContent = event.detail.xhr.status === 403
      ? "You don't have access to this section."
      : "This section could not be loaded. Reload the page to try again.";
  }
});
