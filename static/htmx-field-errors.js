// A form sent by htmx and refused with field errors comes back as 422 with the form as typed and the errors:
// swap it in like a success. Other error answers are left unswapped, as htmx does by default.
document.addEventListener("htmx:beforeSwap", function (event) {
  if (event.detail.xhr && event.detail.xhr.status === 422) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
