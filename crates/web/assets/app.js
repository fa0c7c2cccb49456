// vetric — the page's only script (no inline scripts: the CSP forbids them).
// 1. The browser's link to vetric, told honestly from the SSE connection's state:
//    "Conectando" until the stream opens, "Ao vivo" while messages arrive, and
//    "Sem conexão — reconectando" on an error or when nothing (not even the server's
//    15-second tick) arrived for 40 s. htmx-ext-sse reconnects by itself with backoff.
// 2. Session timers keep counting between server updates.
(function () {
  "use strict";
  var SILENCE_MS = 40000;
  var lastMessage = 0;
  function setLive(state) {
    var el = document.getElementById("live-status");
    if (!el) return;
    var text = { connecting: "Conectando", on: "Ao vivo", off: "Sem conexão — reconectando" }[state];
    if (el.textContent !== text) el.textContent = text;
    el.className = "live live-" + (state === "connecting" ? "connecting" : state);
  }
  document.addEventListener("htmx:sseOpen", function () { lastMessage = Date.now(); setLive("on"); });
  document.addEventListener("htmx:sseMessage", function () { lastMessage = Date.now(); setLive("on"); });
  document.addEventListener("htmx:sseError", function () { setLive("off"); });
  document.addEventListener("htmx:sseClose", function () { setLive("off"); });
  setInterval(function () {
    if (lastMessage && Date.now() - lastMessage > SILENCE_MS) setLive("off");
  }, 5000);

  var seen = new WeakMap();
  function fmt(s) {
    var m = Math.floor(Math.max(0, s) / 60), h = Math.floor(m / 60);
    m = m % 60;
    if (h === 0) return m === 0 ? "menos de 1 min" : m + " min";
    return h + " h " + (m < 10 ? "0" : "") + m + " min";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-elapsed]").forEach(function (el) {
      if (!seen.has(el)) seen.set(el, now);
      var base = parseInt(el.getAttribute("data-elapsed"), 10) || 0;
      var text = fmt(base + (now - seen.get(el)) / 1000);
      if (el.textContent !== text) el.textContent = text;
    });
  }
  setInterval(tick, 15000);
  document.addEventListener("htmx:afterSwap", tick);
})();

// Copy buttons (invite links, new API tokens): <button data-copy="INPUT_ID">, with an optional
// <span data-copy-status="INPUT_ID"> that says whether it worked.
(function () {
  "use strict";
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest ? ev.target.closest("[data-copy]") : null;
    if (!btn) return;
    var id = btn.getAttribute("data-copy");
    var input = document.getElementById(id);
    var status = document.querySelector('[data-copy-status="' + id + '"]');
    if (!input) return;
    function say(t) { if (status) status.textContent = t; }
    input.focus();
    input.select();
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(input.value).then(
        function () { say("Copiado."); },
        function () { say("Não foi possível copiar: selecione o texto e copie."); });
    } else {
      say("Selecione o texto e copie (Ctrl+C).");
    }
  });
})();
