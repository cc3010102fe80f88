// A virtualised list: of many rows of one height, only those in view (and a
// few around them) are in the DOM, so a table of 10,000 steps scrolls as
// lightly as one of ten.

import { h } from "./dom.js";

const OVERSCAN = 8;

export class VirtualList {
  /**
   * `rowHeight` in pixels; `render(i)` makes row `i` (an element, placed by
   * the list); `height` the viewport's height in pixels at most.
   */
  constructor({ rowHeight, render, height = 420, className = "" }) {
    this.rowHeight = rowHeight;
    this.render = render;
    this.maxHeight = height;
    this.count = 0;
    this.inner = h("div", { class: "vlist-inner" });
    this.el = h("div", { class: `vlist ${className}` }, this.inner);
    this.el.addEventListener("scroll", () => this.draw(), { passive: true });
    this.drawn = "";
  }

  /** Sets the number of rows and draws again. */
  setCount(n) {
    this.count = n;
    this.inner.style.height = `${n * this.rowHeight}px`;
    this.el.style.height = `${Math.min(this.maxHeight, Math.max(n, 1) * this.rowHeight + 2)}px`;
    this.refresh();
  }

  /** Draws the rows in view again (their data changed). */
  refresh() {
    this.drawn = "";
    this.draw();
  }

  draw() {
    const top = this.el.scrollTop;
    const view = this.el.clientHeight || this.maxHeight;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - OVERSCAN);
    const last = Math.min(this.count, Math.ceil((top + view) / this.rowHeight) + OVERSCAN);
    const key = `${first}:${last}`;
    if (key === this.drawn) return;
    this.drawn = key;
    const rows = [];
    for (let i = first; i < last; i++) {
      const row = this.render(i);
      row.classList.add("vrow");
      row.style.top = `${i * this.rowHeight}px`;
      row.style.height = `${this.rowHeight}px`;
      rows.push(row);
    }
    this.inner.replaceChildren(...rows);
  }

  /** Scrolls row `i` into view. */
  show(i) {
    const y = i * this.rowHeight;
    if (y < this.el.scrollTop || y > this.el.scrollTop + this.el.clientHeight - this.rowHeight) {
      this.el.scrollTop = Math.max(0, y - this.el.clientHeight / 2);
    }
  }
}
