// The configuration editor: keep each colour's picker and its #rrggbb text field in step.
// Without this script the form still works: a typed colour wins when it differs from the one shown.
(function () {
  "use strict";
  var HEX = /^#[0-9a-fA-F]{6}$/;
  document.querySelectorAll("[data-color-field]").forEach(function (field) {
    var picker = field.querySelector("[data-color-picker]");
    var text = field.querySelector("[data-color-text]");
    if (!picker || !text) return;
    picker.addEventListener("input", function () { text.value = picker.value; });
    text.addEventListener("input", function () {
      if (HEX.test(text.value.trim())) picker.value = text.value.trim().toLowerCase();
    });
  });
})();
