// Loaded after require.js and before the widget manager (see nb_ipywidgets_js in _config.yml).
(function () {
  // 1. Point require.js at the widget manager vendored into this site, so that the
  //    fonts and modules it loads come from here, never from a CDN.
  var here = document.currentScript.src;               // .../_static/vendor/widgets-config.js
  var base = here.slice(0, here.lastIndexOf("/") + 1); // .../_static/vendor/
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": base + "widgets" } });

  // 2. The widget manager typesets labels with MathJax 2's MathJax.Hub.Queue; the site
  //    serves MathJax 3, which has no Hub. Give the MathJax config object (here, before
  //    MathJax loads) and MathJax 3 itself (in startup.ready) a small, non-enumerable Hub
  //    that forwards to MathJax 3's typesetPromise.
  var hub = {
    Queue: function (job) {
      var mj = window.MathJax, element = job && job[2];
      if (mj && mj.startup && mj.startup.promise && mj.typesetPromise) {
        mj.startup.promise.then(function () { return mj.typesetPromise(element ? [element] : undefined); });
      }
    },
  };
  function addHub(target) {
    if (target && !target.Hub) {
      Object.defineProperty(target, "Hub", { value: hub, enumerable: false, configurable: true, writable: true });
    }
  }
  var config = (window.MathJax = window.MathJax || {});
  addHub(config);
  config.startup = config.startup || {};
  var ready = config.startup.ready;
  config.startup.ready = function () {
    if (ready) { ready(); } else { window.MathJax.startup.defaultReady(); }
    addHub(window.MathJax);
  };
})();
