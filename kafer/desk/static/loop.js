// The desk's loop pages (kafer/desk/loop.py): files sent in pieces, a retrain followed as it runs.
// Plain script, no library. Every word shown comes from the page (#desk-words) or from the server's answers.
(() => {
  "use strict";
  const main = document.querySelector("[data-desk]");
  if (!main) return;
  const words = JSON.parse(document.getElementById("desk-words").textContent);
  const base = main.dataset.base;
  const pieceBytes = Number(main.dataset.piece) || 4000000;

  function xsrf() {
    const found = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return found ? decodeURIComponent(found[1]).replace(/^"|"$/g, "") : "";
  }

  async function call(method, path, body) {
    const raw = body instanceof Blob;
    const headers = { "X-XSRFToken": xsrf() };
    headers["Content-Type"] = raw ? "application/octet-stream" : "application/json";
    const reply = await fetch(base + path, {
      method, headers, credentials: "same-origin",
      body: method === "GET" ? undefined : raw ? body : JSON.stringify(body || {}),
    });
    let answer = {};
    try { answer = await reply.json(); } catch (_) { answer = {}; }
    if (!reply.ok) throw new Error(answer.message || words.failed);
    return answer;
  }

  function say(form, text, problem) {
    const said = form.querySelector("[data-said]");
    said.hidden = !text;
    said.textContent = text || "";
    said.classList.toggle("problem", Boolean(problem));
    said.setAttribute("role", problem ? "alert" : "status");
  }

  async function send(form, files) {
    const purpose = form.dataset.upload;
    const bar = form.querySelector("progress");
    const upload = await call("POST", "api/uploads", {
      purpose, files: files.map((f) => ({ name: f.name, size: f.size })),
    });
    bar.hidden = false;
    bar.value = 0;
    say(form, upload.progress);
    let state = upload;
    for (const file of files) {
      for (let at = 0; at < file.size; at += pieceBytes) {
        const piece = file.slice(at, Math.min(at + pieceBytes, file.size));
        const query = `?name=${encodeURIComponent(file.name)}&offset=${at}`;
        state = await call("POST", `api/uploads/${upload.upload}/piece${query}`, piece);
        bar.value = state.size ? state.received / state.size : 0;
        say(form, state.progress);
      }
    }
    return state;
  }

  function upload(form) {
    const input = form.querySelector("input[type=file]");
    const drop = form.querySelector("[data-drop]");
    const submit = form.querySelector("button[type=submit]");
    const start = form.querySelector("[data-start]");
    const download = form.querySelector("[data-download]");
    let ready = null;
    ["dragenter", "dragover"].forEach((kind) => drop.addEventListener(kind, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((kind) => drop.addEventListener(kind, () => drop.classList.remove("over")));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      input.files = event.dataTransfer.files;
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const files = Array.from(input.files);
      if (!files.length) { say(form, words.no_files, true); return; }
      submit.disabled = true;
      if (start) start.hidden = true;
      if (download) download.hidden = true;
      try {
        say(form, words.sending);
        const sent = await send(form, files);
        if (form.dataset.upload === "list") {
          say(form, words.scoring);
          const issued = await call("POST", "api/lists", { upload: sent.upload });
          say(form, issued.said);
          download.href = issued.download;
          download.hidden = false;
        } else {
          say(form, words.checking);
          ready = await call("POST", `api/uploads/${sent.upload}/check`, {});
          say(form, `${words.ready} ${ready.progress}` + (form.dataset.retrain ? "" : ` ${words.no_retrain_right}`));
          if (form.dataset.retrain) start.hidden = false;
        }
      } catch (error) {
        say(form, error.message, true);
      } finally {
        submit.disabled = false;
      }
    });
    if (start) start.addEventListener("click", async () => {
      start.disabled = true;
      try {
        const job = await call("POST", "api/retrain", { upload: ready.upload });
        window.location.assign(job.page);
      } catch (error) {
        say(form, error.message, true);
        start.disabled = false;
      }
    });
  }

  function follow(section) {
    const headline = section.querySelector("[data-headline]");
    const ended = section.querySelector("[data-ended]");
    const lines = section.querySelector("[data-lines]");
    const every = Number(section.dataset.every) || 2000;
    let job = "", offset = 0;
    async function look() {
      let answer;
      try {
        answer = await call("GET", `api/jobs/latest?job=${encodeURIComponent(job)}&since=${offset}`);
      } catch (error) {
        headline.textContent = error.message;
        setTimeout(look, every);
        return;
      }
      if (!answer.job) { setTimeout(look, every); return; }
      if (answer.job.id !== job) { lines.textContent = ""; job = answer.job.id; }
      offset = answer.offset;
      if (answer.lines.length) {
        lines.textContent += answer.lines.join("\n") + "\n";
        lines.scrollTop = lines.scrollHeight;
      }
      headline.textContent = answer.job.headline;
      headline.classList.toggle("problem", answer.job.state === "failed");
      ended.hidden = answer.job.state === "running";
      ended.textContent = "";
      if (answer.job.decision) {
        const link = document.createElement("a");
        link.href = answer.job.decision;
        link.className = "act";
        link.textContent = words.open_decision;
        ended.appendChild(link);
      }
      // a finished job may be followed by a new one: keep looking, slower
      setTimeout(look, answer.job.state === "running" ? every : every * 3);
    }
    look();
  }

  document.querySelectorAll("form[data-upload]").forEach(upload);
  document.querySelectorAll("[data-job]").forEach(follow);
})();
