// Added to every page of the Prefect UI by prefect-gate.service: signs the person out after
// data-idle seconds without a key, click, wheel or touch (the UI's own polling is not
// activity), tells the gate about activity at most every 30 s, and shows a sign-out link.
(() => {
  const script = document.currentScript;
  const idleMs = Number(script.dataset.idle) * 1000;
  const every = Math.min(30000, idleMs / 3);
  let last = Date.now();
  let told = Date.now();
  const active = () => {
    last = Date.now();
    if (last - told >= every) {
      told = last;
      fetch("/prh/alive", { method: "POST", credentials: "same-origin" });
    }
  };
  for (const name of ["keydown", "mousedown", "wheel", "touchstart"]) {
    addEventListener(name, active, { capture: true, passive: true });
  }
  setInterval(() => {
    if (Date.now() - last >= idleMs) location.assign("/sign-out/idle");
  }, 1000);
  addEventListener("DOMContentLoaded", () => {
    const link = document.createElement("a");
    link.id = "prh-sign-out";
    link.href = "/sign-out";
    link.textContent = `Sign out ${script.dataset.user}`;
    link.style.cssText =
      "position:fixed;top:6px;right:12px;z-index:9999;padding:4px 10px;background:#fff;" +
      "border:1px solid #ccc;border-radius:4px;font:13px system-ui,sans-serif;color:#2e5bd1";
    document.body.append(link);
  });
})();
