// A frame player: shows frame N of a clip, scrubs by frame number (arrows, J/K/L), and turns
// clicks and drags on the picture into subject prompts in source pixels.
import { query } from "./api.js";

const DRAG_PX = 6;

export class Player {
  constructor(root, { onFrame, onPrompt } = {}) {
    this.root = root;
    this.image = root.querySelector(".frame");
    this.matte = root.querySelector(".matte");
    this.canvas = root.querySelector(".prompts");
    this.onFrame = onFrame || (() => {});
    this.onPrompt = onPrompt || (() => {});
    this.clip = null;
    this.n = 0;
    this.direction = 0;
    this.pending = null;
    this.drawPrompts = () => [];
    this.box = root.querySelector(".frame-box");
    this.area = root.querySelector(".frame-area");
    this.image.addEventListener("load", () => { this.fit(); this.redraw(); });
    new ResizeObserver(() => { this.fit(); this.redraw(); }).observe(this.area);
    this.listenForPrompts();
  }

  open(clip, frame) {
    this.clip = clip;
    this.show(frame ?? clip.first);
  }

  frameUrl(n) { return `/web/api/frame?${query({ clip: this.clip.clip, n })}`; }

  show(n) {
    if (!this.clip) return;
    this.n = Math.max(this.clip.first, Math.min(this.clip.last, n));
    this.image.src = this.frameUrl(this.n);
    this.setMatte(null);
    this.onFrame(this.n);
  }

  step(delta) { this.stop(); this.show(this.n + delta); }

  play(direction) {
    this.direction = direction;
    if (this.timer) return;
    const tick = () => {
      const next = this.n + this.direction;
      if (!this.direction || next < this.clip.first || next > this.clip.last) { this.stop(); return; }
      const started = performance.now();
      const loaded = () => {
        this.image.removeEventListener("load", loaded);
        const wait = Math.max(0, 1000 / this.clip.fps - (performance.now() - started));
        this.timer = setTimeout(tick, wait);
      };
      this.image.addEventListener("load", loaded);
      this.show(next);
    };
    this.timer = setTimeout(tick, 0);
  }

  stop() { this.direction = 0; clearTimeout(this.timer); this.timer = null; }

  key(event) {
    const keys = { ArrowLeft: () => this.step(event.shiftKey ? -10 : -1), ArrowRight: () => this.step(event.shiftKey ? 10 : 1),
                   j: () => this.play(-1), k: () => this.stop(), l: () => this.play(1),
                   Home: () => this.step(this.clip.first - this.n), End: () => this.step(this.clip.last - this.n) };
    const action = keys[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (!action || !this.clip) return false;
    action();
    return true;
  }

  setMatte(url) {
    if (this.matteUrl) URL.revokeObjectURL(this.matteUrl);
    this.matteUrl = url;
    this.matte.hidden = !url;
    if (url) this.matte.src = url;
  }

  // the picture as large as the stage allows, at the clip's aspect (overlays share its box)
  fit() {
    const width = this.image.naturalWidth || this.clip?.width;
    const height = this.image.naturalHeight || this.clip?.height;
    if (!width || !height) return;
    const scale = Math.min(this.area.clientWidth / width, this.area.clientHeight / height);
    this.box.style.width = `${Math.floor(width * scale)}px`;
    this.box.style.height = `${Math.floor(height * scale)}px`;
    this.fitCanvas();
  }

  fitCanvas() {
    const rect = this.image.getBoundingClientRect();
    this.canvas.width = Math.round(rect.width * devicePixelRatio);
    this.canvas.height = Math.round(rect.height * devicePixelRatio);
    this.canvas.style.width = `${rect.width}px`;
    this.canvas.style.height = `${rect.height}px`;
  }

  scale() { return this.canvas.width / (this.clip ? this.clip.width : 1); }

  toSource(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this.clip.width;
    const y = ((event.clientY - rect.top) / rect.height) * this.clip.height;
    return [Math.max(0, Math.min(this.clip.width - 1, x)), Math.max(0, Math.min(this.clip.height - 1, y))];
  }

  listenForPrompts() {
    let start = null;
    let startScreen = null;
    this.canvas.addEventListener("mousedown", (event) => {
      if (!this.clip || event.button !== 0) return;
      event.preventDefault();
      this.stop();
      start = this.toSource(event);
      startScreen = [event.clientX, event.clientY];
    });
    this.canvas.addEventListener("mousemove", (event) => {
      if (!start) return;
      this.redraw();
      if (Math.hypot(event.clientX - startScreen[0], event.clientY - startScreen[1]) > DRAG_PX) {
        const [x, y] = this.toSource(event);
        this.drawBox([start[0], start[1], x - start[0], y - start[1]], "#ffffff", [6, 4]);
      }
    });
    window.addEventListener("mouseup", (event) => {
      if (!start) return;
      const moved = Math.hypot(event.clientX - startScreen[0], event.clientY - startScreen[1]) > DRAG_PX;
      const end = this.toSource(event);
      const from = start;
      start = null;
      if (moved) {
        const box = [Math.min(from[0], end[0]), Math.min(from[1], end[1]), Math.abs(end[0] - from[0]), Math.abs(end[1] - from[1])];
        if (box[2] >= 4 && box[3] >= 4) this.onPrompt({ kind: "box", box });
      } else {
        this.onPrompt({ kind: event.altKey ? "negative" : "point", point: from });
      }
      this.redraw();
    });
  }

  redraw() {
    const g = this.canvas.getContext("2d");
    g.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.clip) return;
    for (const item of this.drawPrompts(this.n)) {
      if (item.box) this.drawBox(item.box, item.color, []);
      for (const p of item.points || []) this.drawPoint(p, item.color, true);
      for (const p of item.negatives || []) this.drawPoint(p, item.color, false);
    }
  }

  drawBox([x, y, w, h], color, dash) {
    const g = this.canvas.getContext("2d");
    const s = this.scale();
    g.save();
    g.setLineDash(dash.map((d) => d * devicePixelRatio));
    g.lineWidth = 2 * devicePixelRatio;
    g.strokeStyle = "rgba(0,0,0,0.7)";
    g.strokeRect(x * s + 1, y * s + 1, w * s, h * s);
    g.strokeStyle = color;
    g.strokeRect(x * s, y * s, w * s, h * s);
    g.restore();
  }

  drawPoint([x, y], color, positive) {
    const g = this.canvas.getContext("2d");
    const s = this.scale();
    const r = 7 * devicePixelRatio;
    g.save();
    g.beginPath();
    g.arc(x * s, y * s, r, 0, 2 * Math.PI);
    g.fillStyle = positive ? color : "#111";
    g.fill();
    g.lineWidth = 2 * devicePixelRatio;
    g.strokeStyle = positive ? "#fff" : color;
    g.stroke();
    g.fillStyle = positive ? "#000" : "#fff";
    g.font = `bold ${11 * devicePixelRatio}px sans-serif`;
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText(positive ? "+" : "−", x * s, y * s + devicePixelRatio / 2);
    g.restore();
  }
}
