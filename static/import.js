// Upload page: when a file is chosen, send its first 256 KB (not the whole file) for a preview and a
// guessed column mapping, and put the answer in place of the plain column fields. Without this script
// the plain fields stay and the upload works the same.
(function () {
  "use strict";
  var PREVIEW_BYTES = 256 * 1024;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function showPreview(input) {
    var target = document.getElementById("import-mapping");
    var file = input.files && input.files[0];
    if (!target || !file) { return; }
    var body = new FormData();
    body.append("file", file.slice(0, PREVIEW_BYTES), file.name);
    target.setAttribute("aria-busy", "true");
    fetch(input.getAttribute("data-preview-url"), {
      method: "POST",
      body: body,
      headers: { "X-CSRF-Token": csrfToken() },
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) { throw new Error("preview failed: " + response.status); }
      return response.text();
    }).then(function (html) {
      target.innerHTML = html;
    }).catch(function () {
      // The plain fields stay; the import itself reports any problem.
    }).finally(function () {
      target.removeAttribute("aria-busy");
    });
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input instanceof HTMLInputElement && input.type === "file" && input.hasAttribute("data-preview-url")) {
      showPreview(input);
    }
  });
})();
